"""`update.sh --dry-run`: what the host would resolve now, sensitive values masked; nothing restarted."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lab.fetchenv import resolve


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="update.sh --dry-run")
    ap.add_argument("--root", required=True, type=Path)
    ap.add_argument("--service", required=True)
    args = ap.parse_args(argv)
    try:
        values, sensitive = resolve(args.root, args.service)
    except Exception as exc:
        print(f"update.sh: {args.service}: {exc}", file=sys.stderr)
        return 1
    print(f"update.sh --dry-run: {args.service} would restart with:")
    for k in sorted(values):
        print(f"  {k}={'********' if k in sensitive else values[k]}")
    print("dry run: nothing restarted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
