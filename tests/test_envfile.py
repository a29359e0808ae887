"""Tests for plans.envfile: surgical edits of shell-style KEY=VALUE files."""

import os
import shutil
import subprocess
from dataclasses import dataclass, replace

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from plans.envfile import (
    Entry,
    EnvFileError,
    get,
    parse,
    set_value,
    unset,
    unset_written,
    validate_key,
    validate_value,
)
from probes.config import parse_env_text
from probes.envparse import EnvProblem

# ---------------------------------------------------------------------------------------------
# parse / get: one example per syntax feature
# ---------------------------------------------------------------------------------------------


def test_parse_plain_assignment() -> None:
    assert parse(b"KEY=value\n") == {"KEY": Entry("KEY", "value", 1)}


def test_parse_export_prefix_and_leading_whitespace() -> None:
    data = b"export A=1\n  export\tB=2\n\t C=3\n"
    assert {k: (e.value, e.line) for k, e in parse(data).items()} == {
        "A": ("1", 1),
        "B": ("2", 2),
        "C": ("3", 3),
    }


def test_parse_key_named_export() -> None:
    # `export=1` is a plain assignment to a variable called "export" in a shell.
    assert get(b"export=1\n", "export") == "1"
    assert get(b"export export=2\n", "export") == "2"
    assert get(b"exportX=3\n", "exportX") == "3"


def test_parse_single_quotes_take_everything_literally() -> None:
    assert get(b"K='a \"b\" \\n $HOME `x` # not a comment'\n", "K") == 'a "b" \\n $HOME `x` # not a comment'


def test_parse_double_quote_escapes_follow_the_shell() -> None:
    # \\ \" \$ \` are escapes; a backslash before anything else stays literal.
    data = b'K="a \\" b \\\\ c \\$ d \\` e \\p f # g \'h\'"\n'
    assert get(data, "K") == "a \" b \\ c $ d ` e \\p f # g 'h'"


def test_parse_empty_values() -> None:
    assert {k: e.value for k, e in parse(b"A=\nB=''\nC=\"\"\nD= # comment\n").items()} == {
        "A": "",
        "B": "",
        "C": "",
        "D": "",
    }


def test_parse_inline_comments() -> None:
    data = b"A=1 # one\nB='2'\t# two\nC=\"3\"  #three\nD=a#b\nE=#x\n"
    assert {k: e.value for k, e in parse(data).items()} == {
        "A": "1",
        "B": "2",
        "C": "3",
        "D": "a#b",  # `#` not preceded by whitespace is part of the word, as in a shell
        "E": "#x",
    }


def test_parse_trailing_whitespace_is_ignored() -> None:
    assert get(b"A=1  \t\nB=2", "A") == "1"


def test_parse_comments_and_blank_lines() -> None:
    data = b"# header\n\n   \n\t# indented comment\nA=1\n#B=2\n"
    assert parse(data) == {"A": Entry("A", "1", 5)}


def test_parse_crlf_and_mixed_line_endings() -> None:
    data = b"A=1\r\nB='2'\nC=\"3\"\r\n# c\r\nD=4"
    assert {k: e.value for k, e in parse(data).items()} == {"A": "1", "B": "2", "C": "3", "D": "4"}


def test_parse_last_assignment_wins() -> None:
    data = b"A=1\nB=x\nexport A='2'\n# A=3\n"
    assert parse(data)["A"] == Entry("A", "2", 3)


def test_parse_no_trailing_newline() -> None:
    assert parse(b"A=1\nB=2") == {"A": Entry("A", "1", 1), "B": Entry("B", "2", 2)}


def test_parse_empty_file() -> None:
    assert parse(b"") == {}
    assert get(b"", "A") is None


def test_parse_accepts_shell_literal_characters_unquoted() -> None:
    url = "postgres://u@db:5432/app?sslmode=verify-full&x=1"
    # `&` is an operator for the shell, so that URL must be quoted; the rest is literal.
    assert get(b"U=postgres://u@db:5432/app?sslmode=verify-full\n", "U") == url.split("&")[0]
    assert get(f"U='{url}'\n".encode(), "U") == url
    assert get(b"G=*.[ch]!%^=,+-\n", "G") == "*.[ch]!%^=,+-"
    # braces: `export G={a,b}` is brace-expanded by bash, so an unquoted pair is refused (quote it)
    assert get(b"G='*.[ch]{a,b}'\n", "G") == "*.[ch]{a,b}"
    with pytest.raises(EnvFileError, match="braces"):
        get(b"export G={,}\n", "G")
    assert get(b"T=a~b\n", "T") == "a~b"  # tilde only expands at the start or after ':'


def test_non_utf8_comments_and_values() -> None:
    data = b"# caf\xe9 \xff\xfe\nA=\xe9t\xe9\nB=\xc3\xa9\n"
    entries = parse(data)
    assert entries["A"].value == "\udce9t\udce9"  # surrogateescape
    assert entries["B"].value == "é"
    assert set_value(data, "B", "x") == b"# caf\xe9 \xff\xfe\nA=\xe9t\xe9\nB=x\n"
    assert set_value(data, "B", "\udcff") == b"# caf\xe9 \xff\xfe\nA=\xe9t\xe9\nB=\xff\n"


def test_get_missing_and_invalid_key() -> None:
    assert get(b"A=1\n", "B") is None
    with pytest.raises(EnvFileError):
        get(b"A=1\n", "not a key")


# ---------------------------------------------------------------------------------------------
# parse errors
# ---------------------------------------------------------------------------------------------


def test_error_names_line_and_problem() -> None:
    data = b"# c\n\nA=1\nB=2\n\nC=3\nfoo bar\n"
    with pytest.raises(EnvFileError) as exc:
        parse(data)
    assert str(exc.value) == "line 7: expected KEY=VALUE, a comment or a blank line"
    assert exc.value.line == 7


def test_rejected_lines_are_never_quoted() -> None:
    # A malformed line may be a secret with its '=' missing: the message names the line, not its text.
    for line in (b"DB_PASSWORD hunter2", b"hunter2", b"export DB_PASSWORD", b"DB_PASSWORD = hunter2"):
        with pytest.raises(EnvFileError) as exc:
            parse(b"A=1\n" + line + b"\n")
        assert str(exc.value).startswith("line 2: expected KEY=VALUE")
        assert "hunter2" not in str(exc.value)


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        (b"KEY = value", "expected KEY=VALUE"),
        (b"export KEY", "expected KEY=VALUE"),
        (b"1KEY=x", "expected KEY=VALUE"),
        (b"KEY-X=x", "expected KEY=VALUE"),
        (b"KEY=two words", "unexpected text after the value"),
        (b"KEY=a;b", "';'"),
        (b"KEY=a|b", "'|'"),
        (b"KEY=$HOME", "'$'"),
        (b"KEY=`id`", "'`'"),
        (b"KEY=a\\b", "'\\\\'"),
        (b"KEY=a'b'", '"\'"'),
        (b"KEY=~/x", "'~'"),
        (b"KEY=a:~/x", "'~'"),
        (b'KEY="$HOME"', "unescaped '$'"),
        (b'KEY="`id`"', "unescaped '`'"),
        (b"KEY='unterminated", "unterminated single quote"),
        (b'KEY="unterminated', "unterminated double quote"),
        (b'KEY="x\\"', "unterminated double quote"),
        (b"KEY='x'y", "unexpected text after the value"),
        (b"KEY='x'#c", "unexpected text after the value"),
        (b'KEY="x" y', "unexpected text after the value"),
        (b"KEY=a\rb", "control character"),
        (b"KEY='a\rb'", "control character"),
        (b"KEY=a\0b", "control character"),
        (b"\xef\xbb\xbfKEY=x", "expected KEY=VALUE"),  # a BOM is not valid shell either
    ],
)
def test_parse_rejects(line: bytes, fragment: str) -> None:
    with pytest.raises(EnvFileError) as exc:
        parse(b"# first\n" + line + b"\nOK=1\n")
    assert str(exc.value).startswith("line 2: ")
    assert fragment in str(exc.value)


def test_value_errors_do_not_echo_the_value() -> None:
    # Env files hold secrets; an error about a value names the key, not the value.
    with pytest.raises(EnvFileError) as exc:
        parse(b"DB_PASSWORD=hunter2 s3cret\n")
    assert "DB_PASSWORD" in str(exc.value)
    assert "hunter2" not in str(exc.value)
    assert "s3cret" not in str(exc.value)


def test_long_bad_line_is_truncated_in_message() -> None:
    with pytest.raises(EnvFileError) as exc:
        parse(b"x" * 500 + b"\n")
    assert len(str(exc.value)) < 120


def test_set_and_unset_refuse_unparseable_files() -> None:
    data = b"A=1\nnonsense\n"
    with pytest.raises(EnvFileError, match="line 2"):
        set_value(data, "A", "2")
    with pytest.raises(EnvFileError, match="line 2"):
        unset(data, "A")


# ---------------------------------------------------------------------------------------------
# validate_key / validate_value
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["A", "_", "_a1", "DATABASE_SSL_MODE", "a", "export"])
def test_validate_key_accepts(key: str) -> None:
    validate_key(key)


@pytest.mark.parametrize("key", ["", "1A", "A-B", "A B", "A=B", "é", "A\n", " A"])
def test_validate_key_rejects(key: str) -> None:
    with pytest.raises(EnvFileError):
        validate_key(key)


@pytest.mark.parametrize("value", ["", "x", "a b", "'\"$`\\#", "é", "\udcff", "\t"])
def test_validate_value_accepts(value: str) -> None:
    validate_value(value)


@pytest.mark.parametrize(
    "value",
    ["a\nb", "a\rb", "\r\n", "a\0b", "\ud800", "\udcc3\udca9"],  # last: escapes that form valid UTF-8
)
def test_validate_value_rejects(value: str) -> None:
    with pytest.raises(EnvFileError):
        validate_value(value)


def test_set_value_validates_key_and_value() -> None:
    with pytest.raises(EnvFileError):
        set_value(b"A=1\n", "A B", "x")
    with pytest.raises(EnvFileError):
        set_value(b"A=1\n", "A", "x\ny")
    with pytest.raises(EnvFileError):
        unset(b"A=1\n", "A=")


# ---------------------------------------------------------------------------------------------
# set_value: exact bytes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "value", "after"),
    [
        # style kept
        (b"K=old\n", "new", b"K=new\n"),
        (b"K='old'\n", "new", b"K='new'\n"),
        (b'K="old"\n', "new", b'K="new"\n'),
        (b"K='old'\n", 'a "b" $c \\d', b"K='a \"b\" $c \\d'\n"),
        (b'K="old"\n', "a \"b\" $c `d` \\e 'f'", b'K="a \\"b\\" \\$c \\`d\\` \\\\e \'f\'"\n'),
        (b"K=\n", "x", b"K=x\n"),
        (b"K=''\n", "x", b"K='x'\n"),
        (b"K=x\n", "", b"K=\n"),
        (b"K='x'\n", "", b"K=''\n"),
        # unquoted cannot hold it -> single quotes, or double quotes if it has a single quote
        (b"K=old\n", "a b", b"K='a b'\n"),
        (b"K=old\n", "$HOME", b"K='$HOME'\n"),
        (b"K=old\n", "~/x", b"K='~/x'\n"),
        (b"K=old\n", "it's", b'K="it\'s"\n'),
        (b"K='old'\n", "it's $x", b'K="it\'s \\$x"\n'),
        (b"K=\n", "a b", b"K='a b'\n"),
        # everything around the value is kept
        (b"  export\tK=old   # keep me\n", "new", b"  export\tK=new   # keep me\n"),
        (b"K='old' # c\n", "n w", b"K='n w' # c\n"),
        (b"K= # c\n", "v", b"K=v # c\n"),
        (b"K=old # c\n", "", b"K= # c\n"),
        (b"K=old #c\n", "#v", b"K=#v #c\n"),
        (b"K=old", "new", b"K=new"),  # no trailing newline stays absent
        (b"K=old\r\n", "new", b"K=new\r\n"),
        (b"A=1\r\nK=old\nB=2\r\n", "new", b"A=1\r\nK=new\nB=2\r\n"),
        (b"# caf\xe9\nK=old # \xff\n", "new", b"# caf\xe9\nK=new # \xff\n"),
        # only the effective (last) assignment changes
        (b"K=1\nexport K='2'\nK=3 # last\nX=K\n", "9", b"K=1\nexport K='2'\nK=9 # last\nX=K\n"),
        # same value -> bytes untouched, even for a non-canonical spelling
        (b'K="a\\b" # c\n', "a\\b", b'K="a\\b" # c\n'),
    ],
)
def test_set_value_existing(before: bytes, value: str, after: bytes) -> None:
    assert set_value(before, "K", value) == after
    assert get(after, "K") == value


@pytest.mark.parametrize(
    ("before", "value", "after"),
    [
        (b"", "v", b"K=v\n"),
        (b"A=1\n", "v", b"A=1\nK=v\n"),
        (b"A=1", "v", b"A=1\nK=v\n"),  # line break added first
        (b"A=1\r\nB=2\r\n", "v", b"A=1\r\nB=2\r\nK=v\r\n"),
        (b"A=1\r\nB=2", "v", b"A=1\r\nB=2\r\nK=v\r\n"),
        (b"A=1\r\nB=2\nC=3\r\n", "v", b"A=1\r\nB=2\nC=3\r\nK=v\r\n"),  # dominant: CRLF
        (b"A=1\r\nB=2\n", "v", b"A=1\r\nB=2\nK=v\n"),  # tie: LF
        (b"A=1\r\n# c\r\nB=2\n", "v", b"A=1\r\n# c\r\nB=2\nK=v\r\n"),  # a comment's CRLF counts
        (b"# only a comment", "v", b"# only a comment\nK=v\n"),
        (b"A=1\n", "", b"A=1\nK=\n"),
        (b"A=1\n", "a b", b"A=1\nK='a b'\n"),
        (b"A=1\n", "it's", b'A=1\nK="it\'s"\n'),
        (b"A=1\n", "$x", b"A=1\nK='$x'\n"),
    ],
)
def test_set_value_appends_missing_key(before: bytes, value: str, after: bytes) -> None:
    assert set_value(before, "K", value) == after


def test_set_value_rollback_example() -> None:
    original = b"# tls\r\nexport DATABASE_SSL_MODE=disable # was off\r\nOTHER='x'\r\n"
    changed = set_value(original, "DATABASE_SSL_MODE", "verify-full")
    assert changed == b"# tls\r\nexport DATABASE_SSL_MODE=verify-full # was off\r\nOTHER='x'\r\n"
    assert set_value(changed, "DATABASE_SSL_MODE", "disable") == original


# ---------------------------------------------------------------------------------------------
# unset: exact bytes
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"K=1\n", b""),
        (b"A=1\nK=2\nB=3\n", b"A=1\nB=3\n"),
        (b"K=1\nA=1\nexport K='2' # c\r\n# K=3\nK=4", b"A=1\n# K=3\n"),
        (b"A=1\r\nK=2\r\nB=3", b"A=1\r\nB=3"),
        (b"A=1\nK=2", b"A=1\n"),
        (b"# \xff\nA=1\n", b"# \xff\nA=1\n"),  # absent: unchanged
        (b"", b""),
    ],
)
def test_unset(before: bytes, after: bytes) -> None:
    assert unset(before, "K") == after


@pytest.mark.parametrize(
    ("before", "after"),
    [
        (b"A=1\nK=new\nB=2\n", b"A=1\nB=2\n"),
        (b"K=new # c\r\nA=1\r\nexport K='new'\r\n", b"A=1\r\n"),  # every line holding it
        (b"A=1\n", b"A=1\n"),  # absent: unchanged
    ],
)
def test_unset_written_removes_what_the_step_wrote(before: bytes, after: bytes) -> None:
    assert unset_written(before, "K", "new") == after


def test_unset_written_keeps_what_it_did_not_write() -> None:
    # an earlier assignment with another value: removing it loses it, keeping it leaves it in effect
    with pytest.raises(EnvFileError, match="line 1: K is also assigned here") as exc:
        unset_written(b"K=pinned\nA=1\nK=new\n", "K", "new")
    assert exc.value.line == 1
    # the effective value is not what the step wrote
    with pytest.raises(EnvFileError, match="line 2: K no longer holds the value the step wrote"):
        unset_written(b"A=1\nK=other\n", "K", "new")


# ---------------------------------------------------------------------------------------------
# the reader (probes.config.parse_env_text): the same parser, lenient about bad lines
# ---------------------------------------------------------------------------------------------


def test_reader_inline_comment_is_not_part_of_the_value() -> None:
    # the old reader took "disable  # pinned by ops" as the value; bash takes "disable"
    values = parse_env_text("DATABASE_SSL_MODE=disable  # pinned by ops\n")
    assert values == {"DATABASE_SSL_MODE": "disable"} and values.problems == () and values.complete


def test_reader_follows_shell_rules() -> None:
    text = 'export A=\'x y\' # c\nB="q\\""\nA=2\r\nC=a#b\n'
    assert parse_env_text(text) == {"A": "2", "B": 'q"', "C": "a#b"}
    assert parse_env_text(text.encode()) == parse_env_text(text)


def test_reader_reports_lines_it_cannot_read_without_their_text() -> None:
    text = "A=1\nDB_PASSWORD hunter2\nB=$HOME\nC='open\nD=4\n"
    values = parse_env_text(text)
    assert values == {"A": "1", "D": "4"}
    assert [p.line for p in values.problems] == [2, 3, 4] and not values.complete
    assert all(isinstance(p, EnvProblem) and str(p).startswith(f"line {p.line}: ") for p in values.problems)
    assert "B: unquoted value contains '$'" in str(values.problems[1])
    assert not any("hunter2" in str(p) or "open" in str(p) for p in values.problems)


# ---------------------------------------------------------------------------------------------
# Property tests: files generated from a grammar of lines
# ---------------------------------------------------------------------------------------------

KEYS = ["A", "B", "DB_URL", "_x", "export", "lower9"]
DQ_ESCAPABLE = '\\"$`'


def bare_ok(value: str) -> bool:
    """Independent model of which values an unquoted shell word spells literally (in our subset)."""
    raw = value.encode("utf-8", "surrogateescape")
    if any(b in b" \t\r\n\0|&;<>()'\"\\$`" for b in raw):
        return False
    return not value.startswith("~") and ":~" not in value and not ("{" in value and "}" in value)


def quote_single(value: str) -> str:
    return "'" + value + "'"


def quote_double(value: str, canonical: bool) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in '"$`':
            out.append("\\" + ch)
        elif ch == "\\":
            nxt = value[i + 1] if i + 1 < len(value) else '"'
            # Canonical: every backslash escaped. Minimal: only where it would start an escape.
            out.append("\\\\" if canonical or nxt in DQ_ESCAPABLE else "\\")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def representable(value: str, style: str) -> bool:
    if style == "bare":
        return bare_ok(value)
    if style == "single":
        return "'" not in value
    return True


@dataclass(frozen=True)
class Line:
    kind: str  # "blank" | "comment" | "assign"
    prefix: bytes = b""  # assignment: everything up to and including '='
    token: bytes = b""  # assignment: the value as written (with quotes)
    suffix: bytes = b""  # assignment: trailing whitespace and comment; else the whole content
    eol: bytes = b"\n"
    key: str | None = None
    value: str | None = None
    style: str | None = None
    canonical: bool = True

    @property
    def raw(self) -> bytes:
        return self.prefix + self.token + self.suffix + self.eol


@dataclass(frozen=True)
class Doc:
    lines: tuple[Line, ...]

    @property
    def data(self) -> bytes:
        return b"".join(line.raw for line in self.lines)

    def effective_index(self, key: str) -> int | None:
        found = None
        for i, line in enumerate(self.lines):
            if line.kind == "assign" and line.key == key:
                found = i
        return found

    def model(self) -> dict[str, Entry]:
        out: dict[str, Entry] = {}
        for i, line in enumerate(self.lines):
            if line.kind == "assign":
                assert line.key is not None and line.value is not None
                out[line.key] = Entry(line.key, line.value, i + 1)
        return out


def enc(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def dec(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")


def valid_value(value: str) -> bool:
    try:
        validate_value(value)
    except EnvFileError:
        return False
    return True


ws = st.text(alphabet=" \t", max_size=3).map(enc)
ws1 = st.text(alphabet=" \t", min_size=1, max_size=3).map(enc)
comment_body = st.one_of(
    st.binary(max_size=16).map(lambda b: b.replace(b"\n", b"")),
    st.sampled_from([b"\r", b" caf\xe9 \xff\xfe", b" A=1", b"export B='x"]),  # CR before LF, non-UTF-8
)
eols = st.sampled_from([b"\n", b"\r\n"])
# Characters that exercise every quoting decision.
tricky = st.text(alphabet="ab9 \t~:'\"\\$`#=*?[]{}!&;|<>()é\udcff", max_size=12)
any_value = st.one_of(
    tricky,
    st.text(max_size=12),
    st.binary(max_size=8).map(dec),
    st.sampled_from(["", "verify-full", "disable", "postgres://u@h:5432/db?sslmode=require"]),
).filter(valid_value)
bare_value = st.text(alphabet="aZ09_-./:,@%+=#*?[]{}!^~é", max_size=10).filter(bare_ok)


@st.composite
def assign_lines(draw: st.DrawFn, eol: bytes) -> Line:
    key = draw(st.sampled_from(KEYS))
    export = draw(st.sampled_from([b"", b"export ", b"export\t", b"export  "]))
    prefix = draw(ws) + export + key.encode() + b"="
    style = draw(st.sampled_from(["bare", "single", "double"]))
    canonical = True
    if style == "bare":
        value = draw(bare_value)
        token = value
    elif style == "single":
        value = draw(any_value.filter(lambda v: "'" not in v))
        token = quote_single(value)
    else:
        value = draw(any_value)
        canonical = draw(st.booleans())
        token = quote_double(value, canonical)
        canonical = token == quote_double(value, True)
    suffix = draw(st.one_of(st.just(b""), ws1, st.tuples(ws1, comment_body).map(lambda t: t[0] + b"#" + t[1])))
    return Line("assign", prefix, enc(token), suffix, eol, key, value, style, canonical)


@st.composite
def lines(draw: st.DrawFn) -> Line:
    eol = draw(eols)
    kind = draw(st.sampled_from(["blank", "comment", "assign", "assign", "assign"]))
    if kind == "blank":
        return Line("blank", suffix=draw(ws), eol=eol)
    if kind == "comment":
        return Line("comment", suffix=draw(ws) + b"#" + draw(comment_body), eol=eol)
    return draw(assign_lines(eol))


@st.composite
def docs(draw: st.DrawFn) -> Doc:
    no_trailing_newline: bool = draw(st.booleans())
    body: list[Line] = draw(st.lists(lines(), max_size=12))
    if body and no_trailing_newline:
        body[-1] = replace(body[-1], eol=b"")
        if not body[-1].raw:
            body.pop()
    return Doc(tuple(body))


def split_lines(data: bytes) -> list[bytes]:
    """Split after each LF, keeping line endings (unlike bytes.splitlines, which also splits on CR)."""
    parts = data.split(b"\n")
    out = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        out.append(parts[-1])
    return out


PROPS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPS
@given(docs())
def test_prop_parse_matches_the_grammar_model(doc: Doc) -> None:
    assert parse(doc.data) == doc.model()
    assert split_lines(doc.data) == [line.raw for line in doc.lines]


@PROPS
@given(docs(), st.sampled_from(KEYS), any_value)
def test_prop_set_value(doc: Doc, key: str, value: str) -> None:
    data = doc.data
    before = parse(data)
    result = set_value(data, key, value)
    after = parse(result)

    # (1) the new value reads back
    assert get(result, key) == value
    # (2) every other key's effective entry (value and line) is unchanged
    assert {k: e for k, e in after.items() if k != key} == {k: e for k, e in before.items() if k != key}
    # (4) idempotent
    assert set_value(result, key, value) == result

    # (3) bytes outside the value of the effective line are identical
    idx = doc.effective_index(key)
    old_lines = [line.raw for line in doc.lines]
    new_lines = split_lines(result)
    if idx is None:
        eol = (
            b"\r\n"
            if sum(raw.endswith(b"\r\n") for raw in old_lines)
            > sum(raw.endswith(b"\n") and not raw.endswith(b"\r\n") for raw in old_lines)
            else b"\n"
        )
        head = data if not data or data.endswith(b"\n") else data + eol
        assert result.startswith(head)
        added = result[len(head) :]
        assert added.startswith(key.encode() + b"=") and added.endswith(eol)
        assert added.count(b"\n") == 1
        assert get(added, key) == value
        assert after[key].line == len(doc.lines) + 1
    else:
        line = doc.lines[idx]
        assert len(new_lines) == len(old_lines)
        assert new_lines[:idx] == old_lines[:idx]
        assert new_lines[idx + 1 :] == old_lines[idx + 1 :]
        changed = new_lines[idx]
        tail = line.suffix + line.eol
        assert changed.startswith(line.prefix) and changed.endswith(tail)
        token = changed[len(line.prefix) : len(changed) - len(tail)]
        if value == line.value:
            assert result == data
        elif representable(value, str(line.style)):
            # the quoting style is kept whenever it can hold the value
            assert token == enc(
                value
                if line.style == "bare"
                else quote_single(value)
                if line.style == "single"
                else quote_double(value, True)
            )
        else:
            assert token == enc(quote_single(value) if "'" not in value else quote_double(value, True))
        assert after[key].line == idx + 1


@st.composite
def docs_with_present_key(draw: st.DrawFn) -> tuple[Doc, str]:
    doc = draw(docs().filter(lambda d: any(ln.kind == "assign" for ln in d.lines)))
    key = draw(st.sampled_from(sorted({ln.key for ln in doc.lines if ln.key is not None})))
    return doc, key


@PROPS
@given(docs_with_present_key(), any_value)
def test_prop_rollback_restores_original(doc_key: tuple[Doc, str], value: str) -> None:
    # (5) set to a new value, then back to the old one
    doc, key = doc_key
    idx = doc.effective_index(key)
    assert idx is not None
    line = doc.lines[idx]
    old = line.value
    assert old is not None
    data = doc.data
    restored = set_value(set_value(data, key, value), key, old)
    assert parse(restored) == parse(data)
    old_lines, new_lines = [ln.raw for ln in doc.lines], split_lines(restored)
    assert new_lines[:idx] + new_lines[idx + 1 :] == old_lines[:idx] + old_lines[idx + 1 :]
    if line.canonical and representable(value, str(line.style)):
        # byte-for-byte when the intermediate value did not force a different quoting style
        assert restored == data


@PROPS
@given(docs(), st.sampled_from(KEYS))
def test_prop_unset_removes_only_that_keys_lines(doc: Doc, key: str) -> None:
    # (6)
    result = unset(doc.data, key)
    expected = b"".join(ln.raw for ln in doc.lines if not (ln.kind == "assign" and ln.key == key))
    assert result == expected
    assert get(result, key) is None
    assert {k: e.value for k, e in parse(result).items()} == {
        k: e.value for k, e in parse(doc.data).items() if k != key
    }
    assert unset(result, key) == result


@PROPS
@given(st.binary(max_size=60))
def test_prop_arbitrary_bytes_parse_or_raise_envfileerror(data: bytes) -> None:
    try:
        entries = parse(data)
    except EnvFileError as exc:
        assert str(exc).startswith("line ")
        return
    for key, entry in entries.items():
        assert set_value(data, key, entry.value) == data
        changed = set_value(data, key, entry.value + "'x y")
        assert get(changed, key) == entry.value + "'x y"
        assert set_value(changed, key, entry.value).count(b"\n") == data.count(b"\n")


BAD_LINES = [b"KEY = v", b"export KEY", b"K=two words", b"K=$HOME", b"K='open", b'K="x" y', b"foo bar", b"K=a;b"]


@PROPS
@given(docs(), st.lists(st.tuples(st.integers(0, 12), st.sampled_from(BAD_LINES)), max_size=3))
def test_prop_reader_reads_what_the_writer_parses(doc: Doc, bad: list[tuple[int, bytes]]) -> None:
    good = [ln.raw if ln.raw.endswith(b"\n") else ln.raw + b"\n" for ln in doc.lines]
    values = parse_env_text(b"".join(good))
    assert values == {k: e.value for k, e in parse(b"".join(good)).items()} and values.problems == ()
    # unreadable lines inserted: reported at their line numbers, every other line still read
    lines = list(good)
    for at, line in sorted(bad, key=lambda t: t[0]):
        lines.insert(min(at, len(lines)), line + b"\n")
    bad_numbers = [i + 1 for i, ln in enumerate(lines) if ln.rstrip(b"\n") in BAD_LINES]
    read = parse_env_text(b"".join(lines))
    assert [p.line for p in read.problems] == bad_numbers
    assert read == {k: e.value for k, e in parse(b"".join(good)).items()}


# ---------------------------------------------------------------------------------------------
# Differential test: a real shell sourcing the file agrees with parse()
# ---------------------------------------------------------------------------------------------

BASH = shutil.which("bash")
DUMP = 'for k in "$@"; do if [ -n "${!k+x}" ]; then printf "%s\\0%s\\0" "$k" "${!k}"; fi; done'


def shell_values(data: bytes, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    assert BASH is not None
    path = tmp_path_factory.mktemp("env") / "file.env"
    # A shell keeps CR as part of the value; CRLF handling is ours, so compare on LF-only files.
    path.write_bytes(data.replace(b"\r\n", b"\n"))
    proc = subprocess.run(
        [BASH, "--noprofile", "--norc", "-c", f'. "$0" || exit 99; {DUMP}', str(path), *KEYS],
        env={"HOME": "/home/nobody", "LC_ALL": "C", "PATH": os.defpath},
        capture_output=True,
        check=True,
        cwd=path.parent,
    )
    assert proc.stderr == b""
    fields = proc.stdout.split(b"\0")[:-1]
    return {fields[i].decode(): fields[i + 1] for i in range(0, len(fields), 2)}


@pytest.mark.skipif(BASH is None, reason="bash not installed")
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=docs(), key=st.sampled_from(KEYS), value=any_value)
def test_prop_bash_agrees(doc: Doc, key: str, value: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    for data in (doc.data, set_value(doc.data, key, value)):
        assume(b"\0" not in data)
        expected = {k: enc(e.value) for k, e in parse(data).items()}
        assert shell_values(data, tmp_path_factory) == expected
        # the reader (probes.config.parse_env_text) agrees with bash too, with nothing left unread
        read = parse_env_text(data)
        assert {k: enc(v) for k, v in read.items()} == expected and read.problems == ()
