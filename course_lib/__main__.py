"""Command line: ``python -m course_lib doctor``."""

from __future__ import annotations

import argparse
import sys

from .doctor import doctor


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_lib")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("doctor", help="check the environment: one [OK]/[FAIL] line per requirement")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return doctor()
    return 2  # pragma: no cover - argparse rejects unknown commands first


if __name__ == "__main__":
    sys.exit(main())
