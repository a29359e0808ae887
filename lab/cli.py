"""`cockpit lab …` / `python -m lab …`: the lab's command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from lab import control, scenarios
from lab.topology import VARIANT_HELP, LabError, LabSpec, default_lab_dir, parse_instances, parse_variants


def build_parser(prog: str = "cockpit lab") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="A real miniature of the platform on loopback.")
    ap.add_argument("--dir", type=Path, default=None, help=f"where the lab lives (default {default_lab_dir()})")
    sub = ap.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser(
        "up",
        help="start the lab (safe to run twice)",
        epilog="variants:\n" + "\n".join(f"  {k:<20} {v}" for k, v in VARIANT_HELP.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    u.add_argument("--instances", default="", help="instances per app service, e.g. api=3,voice=4")
    u.add_argument("--net", default="127.0.10", help="first three octets of the lab's loopback addresses")
    u.add_argument("--scenario", default="", help="put the fleet in this scenario after start")
    u.add_argument("--variant", default="", help="platform variants, comma-separated (see below)")
    sub.add_parser("down", help="stop every lab process")
    st = sub.add_parser("status", help="hosts, processes, listeners and each instance's meter")
    st.add_argument("--json", action="store_true")
    sc = sub.add_parser(
        "scenario",
        help="put the fleet in a named state",
        epilog="scenarios:\n" + scenarios.describe(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sc.add_argument("name", nargs="?", default="")
    m = sub.add_parser("meters", help="show (or --reset) the availability meters")
    m.add_argument("--reset", action="store_true")
    m.add_argument("--json", action="store_true")
    return ap


def main(argv: list[str] | None = None, prog: str = "cockpit lab") -> int:
    args = build_parser(prog).parse_args(argv)
    directory = (args.dir or default_lab_dir()).resolve()
    try:
        if args.cmd == "up":
            spec = LabSpec(
                dir=str(directory),
                net=args.net,
                instances=parse_instances(args.instances),
                variants=parse_variants(args.variant),
            )
            t = control.up(spec)
            if args.scenario:
                scenarios.apply(spec, args.scenario)
            print(
                f"lab up in {t['total']:.1f}s: {len(spec.hosts())} hosts on {spec.net}.0/24"
                + (f"; variants: {','.join(spec.variants)}" if spec.variants else "")
            )
            print(f"  inventory:  {directory / 'inventory.toml'}")
            print(f"  ssh config: ssh -F {directory / 'ssh' / 'ssh_config'} {spec.app_hosts()[0].name}")
            print(f"  AWS:        {spec.aws_endpoint} (moto); the operator's identity for it:")
            print(
                "              export AWS_ACCESS_KEY_ID=lab-operator AWS_SECRET_ACCESS_KEY=lab-operator "
                "AWS_EC2_METADATA_DISABLED=true"
            )
            return 0
        if args.cmd == "down":
            left = control.down(directory)
            if left:
                print(f"lab down: still running: {left}", file=sys.stderr)
                return 1
            print("lab down: every lab process stopped")
            return 0
        spec = LabSpec.load(directory)
        if args.cmd == "status":
            return _status(spec, as_json=args.json)
        if args.cmd == "scenario":
            if not args.name:
                print("scenarios:\n" + scenarios.describe())
                return 0
            hosts = scenarios.apply(spec, args.name)
            print(f"scenario {args.name}: applied; restarted {len(hosts)} hosts; meters reset")
            return 0
        if args.cmd == "meters":
            if args.reset:
                control.reset_meters(spec)
            ms = control.meters(spec)
            if args.json:
                print(json.dumps(ms, indent=2))
            else:
                _print_meters(ms)
            return 0
    except (LabError, FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"lab: {exc}", file=sys.stderr)
        return 1
    return 2


def _print_meters(ms: dict[str, dict[str, object]]) -> None:
    print(f"{'instance':<36} {'ok':>7} {'failed':>7} {'stall ms':>9}  last failure")
    for key, m in ms.items():
        print(
            f"{key:<36} {m.get('requests_ok', 0):>7} {m.get('requests_failed', 0):>7} "
            f"{m.get('longest_stall_ms', 0):>9}  {m.get('last_failure', '') or '-'}"
        )


def _status(spec: LabSpec, *, as_json: bool) -> int:
    rows = control.status(spec)
    ms = control.meters(spec)
    if as_json:
        print(json.dumps({"variants": list(spec.variants), "hosts": rows, "meters": ms}, indent=2))
        return 0
    print(
        f"lab {spec.dir}  env {spec.environment}  net {spec.net}.0/24  AWS {spec.aws_endpoint}  "
        f"variants {','.join(spec.variants) or '-'}"
    )
    print(f"{'host':<24} {'address':<14} {'sshd':<5} {'processes':<44} listening")
    for r in rows:
        procs_s = " ".join(f"{n}:{pid or 'DOWN'}" for n, pid in r["processes"].items()) or "-"
        print(
            f"{r['host']:<24} {r['address']:<14} {'up' if r['sshd'] else 'DOWN':<5} {procs_s:<44} "
            f"{','.join(map(str, r['listening']))}"
        )
    print()
    _print_meters(ms)
    return 0
