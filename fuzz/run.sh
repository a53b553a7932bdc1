#!/usr/bin/env bash
# `make fuzz`: builds the fuzz targets (nightly, cargo-fuzz installed when missing) and runs
# each for FUZZ_SECONDS (first argument, default 60), one after the other, then prints one
# table: executions and findings per target. Exits non-zero when a target found a crash.
#
# Environment: FUZZ_TARGETS (space-separated subset), FUZZ_SANITIZER (`none` by default: the
# code under test is safe Rust, and speed buys executions; `address` for ASan).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
sanitizer="${FUZZ_SANITIZER:-none}"
targets="${FUZZ_TARGETS:-kinesis_event record_transform mpas_client forwarder_config syslog_format bulk_answer}"
target_dir=fuzz/target

if ! cargo +nightly --version >/dev/null 2>&1; then
  echo "make fuzz needs a nightly Rust toolchain (rustup toolchain install nightly)" >&2
  exit 2
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (crates.io)"
  cargo install cargo-fuzz --locked
fi

flags=(--sanitizer "$sanitizer" --debug-assertions --target-dir "$target_dir")
cargo +nightly fuzz build "${flags[@]}"

# The secrets of seed configurations are plain values (local-run form): let them through so
# that the parser goes past the secret check.
export AUTHTRAIL_ALLOW_PLAINTEXT_SECRETS=true

summary=()
failed=0
for t in $targets; do
  work="$target_dir/corpus/$t"      # new inputs land here; fuzz/corpus/$t (the seeds) is read only
  artifacts="fuzz/artifacts/$t"
  log="$target_dir/logs/$t.log"
  mkdir -p "$work" "$artifacts" "$(dirname "$log")"
  before=$(find "$artifacts" -type f | wc -l)
  status=0
  cargo +nightly fuzz run "${flags[@]}" "$t" "$work" "fuzz/corpus/$t" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  after=$(find "$artifacts" -type f | wc -l)
  # The final stats line, or libFuzzer's "Done N runs" line.
  runs=$(grep -E '^stat::number_of_executed_units:' "$log" | tail -1 | awk '{print $2}')
  if [ -z "$runs" ]; then
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1 | awk '{print $2}')
  fi
  rate=$(grep -E '^stat::average_exec_per_sec:' "$log" | tail -1 | awk '{print $2}')
  crashes=$((after - before))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi
  if [ "$crashes" -ne 0 ]; then
    failed=1
    echo "== $t: finding (exit $status); log $log, inputs in $artifacts/" >&2
    grep -E 'panicked at|^==[0-9]+==ERROR|SUMMARY|Test unit written' "$log" | head -5 >&2 || true
  fi
  summary+=("$(printf '%-18s %14s %10s %8s' "$t" "${runs:-?}" "${rate:-?}" "$crashes")")
done

echo
printf '%-18s %14s %10s %8s\n' target executions exec/s crashes
for line in "${summary[@]}"; do echo "$line"; done
echo "(${seconds} s per target, sanitizer ${sanitizer}; logs in $target_dir/logs/)"
exit "$failed"
