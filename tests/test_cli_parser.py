"""`cockpit`'s one argparse tree: every command that reads a plan takes `--plan FILE`, the old `--plan-file`
is refused naming `--plan`, and the keys the drive and watch help lists are the screens' keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.parser import KEYS, build_parser

Argv = tuple[list[str], list[str]]  # (the words before the options, the words after them)
# certs takes its options after push/check
PLAN_COMMANDS = (
    (["plan"], []),
    (["advance"], []),
    (["rollback"], ["pg-2"]),
    (["restart"], ["api"]),
    (["certs", "check"], []),
    (["lock"], []),
    (["drive"], []),
    (["watch"], []),
    (["replay"], ["r.jsonl"]),
)


@pytest.mark.parametrize("argv", PLAN_COMMANDS, ids=lambda a: a[0][0])
def test_every_command_that_reads_a_plan_takes_plan_file(argv: Argv) -> None:
    cmd, rest = argv
    args = build_parser().parse_args([*cmd, "--plan", "my.toml", *rest])
    assert args.plan == Path("my.toml")


@pytest.mark.parametrize("argv", PLAN_COMMANDS, ids=lambda a: a[0][0])
def test_plan_file_is_refused_naming_plan(argv: Argv, capsys: pytest.CaptureFixture[str]) -> None:
    cmd, rest = argv
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*cmd, "--plan-file", "my.toml", *rest])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "--plan-file is now --plan FILE" in err and "pass --plan my.toml" in err, err


def test_plan_file_is_not_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["advance", "--help"])
    out = capsys.readouterr().out
    assert "--plan FILE" in out and "--plan-file" not in out


@pytest.mark.parametrize(
    "key",
    ["R restart", "p pause/resume", "s stop", "/ filter", "j k down/up", "g G first/last row", "? help", "ctrl+p"],
)
def test_the_help_lists_every_key(key: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert key in KEYS
    with pytest.raises(SystemExit):
        build_parser().parse_args(["drive", "--help"])
    assert key in capsys.readouterr().out
