"""pg_hba.conf read as Postgres reads it (first match wins): whether any rule still lets a TCP connection in
without TLS. Pure: the file's text in, the answer out — the same decision the probe makes when its user may
not query pg_hba_file_rules."""

from __future__ import annotations

import pytest

from probes.pghba import hba_from_file, parse_hba, plaintext_rules

HOSTSSL_ONLY = """
# TYPE  DATABASE  USER  ADDRESS     METHOD
local   all       all               peer
hostssl all       all   0.0.0.0/0   scram-sha-256
hostssl all       all   ::/0        scram-sha-256
"""


def test_hostssl_only_lets_no_plaintext_in() -> None:
    assert hba_from_file(HOSTSSL_ONLY) == (True, "no rule lets a TCP connection in without TLS")


def test_a_host_rule_lets_plaintext_in_and_is_named_by_line() -> None:
    text = HOSTSSL_ONLY + "host all all 10.0.0.0/8 scram-sha-256\n"
    ok, why = hba_from_file(text)
    assert ok is False and why.startswith("line 6 "), why


@pytest.mark.parametrize(
    ("extra", "plain"),
    [
        ("host all all 0.0.0.0/0 reject\nhost all all 0.0.0.0/0 md5\n", False),  # a catch-all reject ends it
        ("host all all all reject\nhost all all 10.0.0.0/8 md5\n", False),
        ("host all all 0.0.0.0 0.0.0.0 reject\nhost all all 10.0.0.0/8 md5\n", False),  # address + netmask form
        ("host voiceai all 0.0.0.0/0 reject\nhost all all 0.0.0.0/0 md5\n", True),  # one database: others get in
        ("host all app 0.0.0.0/0 reject\nhost all all 0.0.0.0/0 md5\n", True),  # one user: others get in
        ("host all all 10.0.0.0/8 reject\nhost all all 0.0.0.0/0 md5\n", True),  # one network: others get in
        ("hostnossl all all 0.0.0.0/0 md5\n", True),
        ("hostnogssenc all all 0.0.0.0/0 md5\n", True),
        ("hostgssenc all all 0.0.0.0/0 md5\n", False),  # GSS encryption is not plaintext
    ],
)
def test_reject_rules_as_postgres_reads_them(extra: str, plain: bool) -> None:
    rules = parse_hba(HOSTSSL_ONLY + extra)
    assert bool(plaintext_rules(rules)) is plain, [r for r in plaintext_rules(rules)]


def test_a_reject_after_the_plaintext_rule_does_not_undo_it() -> None:
    rules = parse_hba("host all all 0.0.0.0/0 md5\nhost all all 0.0.0.0/0 reject\n")
    assert [r.line_number for r in plaintext_rules(rules)] == [1]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("include_dir conf.d\n" + HOSTSSL_ONLY, "includes other files"),
        ("include other.conf\n", "includes other files"),
        ("hostx all all 0.0.0.0/0 md5\n", "unknown rule type 'hostx'"),
        ("host all all\n", "incomplete line"),
    ],
)
def test_what_cannot_be_decided_is_unknown_with_why(text: str, fragment: str) -> None:
    ok, why = hba_from_file(text)
    assert ok is None and fragment in why, why


def test_comments_and_blank_lines_keep_line_numbers() -> None:
    rules = parse_hba("# a comment\n\nhost all all 0.0.0.0/0 md5  # trailing\n")
    assert [(r.line_number, r.type, r.auth_method) for r in rules] == [(3, "host", "md5")]
