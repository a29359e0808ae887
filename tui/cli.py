"""`cockpit`: the command line. Thin over the engine; the TUI is imported only when it runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from probes.inventory import InventoryError, load_inventory


def default_inventory() -> Path:
    env = os.environ.get("COCKPIT_INVENTORY")
    if env:
        return Path(env)
    from lab.topology import default_lab_dir

    return default_lab_dir() / "inventory.toml"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="cockpit",
        description="Rollout Cockpit: drive the platform's internal-encryption rollout (Postgres, PgBouncer, "
                    "Redis) over SSH, one step and one service at a time.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    sub.add_parser("lab", help="the lab: a real miniature platform on loopback (cockpit lab --help)",
                   add_help=False)
    st = sub.add_parser("status", help="every leg of every host, live: table or JSON snapshot")
    st.add_argument("--env", default=None, help="environment (default: the inventory's default_env)")
    st.add_argument("--inventory", type=Path, default=None,
                    help="inventory TOML (default: $COCKPIT_INVENTORY or the lab's)")
    st.add_argument("--json", action="store_true", help="print the FleetSnapshot as JSON (docs/snapshot.md)")
    return ap


async def _status(inv_path: Path, env_name: str | None, as_json: bool) -> int:
    from probes.collect import Collector
    from probes.model import Verdict
    from probes.snapshot import snapshot_to_json
    from tui.statustext import render

    inv = load_inventory(inv_path)
    env = inv.env(env_name)
    collector = Collector(env)
    try:
        snap = await collector.snapshot()
    finally:
        await collector.aclose()
    if as_json:
        print(json.dumps(snapshot_to_json(snap), indent=1))
    else:
        print(render(snap))
    return 0 if snap.verdict in (Verdict.OK, Verdict.WARN) else 1


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "lab":
        from lab.cli import main as lab_main

        return lab_main(argv[1:], prog="cockpit lab")
    args = build_parser().parse_args(argv)
    try:
        if args.cmd == "status":
            return asyncio.run(_status(args.inventory or default_inventory(), args.env, args.json))
    except InventoryError as exc:
        print(f"cockpit: {exc}", file=sys.stderr)
        return 2
    except FileNotFoundError as exc:
        print(f"cockpit: {exc} — pass --inventory FILE or start the lab (cockpit lab up)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 2


if __name__ == "__main__":
    sys.exit(main())
