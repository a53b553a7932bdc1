#!/usr/bin/env bash
# Creates ./.venv and installs a pinned requirements file into it, once. Re-running with an
# unchanged requirements file costs a hash comparison.
set -euo pipefail
req="$1"
venv="${AUTHTRAIL_VENV:-.venv}"
stamp="$venv/.$(basename "$req").sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$venv/bin/python" ]; then
  exit 0
fi
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --upgrade pip
fi
echo "installing $(basename "$req") into $venv"
"$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
