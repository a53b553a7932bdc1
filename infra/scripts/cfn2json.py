#!/usr/bin/env python3
"""Prints a CloudFormation template (YAML or JSON, short-form tags included) as JSON.

Uses cfn-lint's own decoder, so `!Ref X` becomes {"Ref": "X"}, `!Sub ...` {"Fn::Sub": ...} and
so on, exactly as CloudFormation reads them. Used by the Rust tests (tests/cloudformation.rs),
which have no YAML parser: `.venv/bin/python infra/scripts/cfn2json.py TEMPLATE`.
"""
import json
import sys

from cfnlint.decode import decode


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: cfn2json.py TEMPLATE", file=sys.stderr)
        return 2
    template, errors = decode(sys.argv[1])
    if errors or template is None:
        for e in errors or []:
            print(e, file=sys.stderr)
        return 1
    json.dump(template, sys.stdout, indent=1, default=str)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
