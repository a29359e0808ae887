"""Replay survives any file: a corpus of mutants generated from a real recording (the drive session of
tests/recording_factory.py: real Recorder, real previews and outcomes, journal and lock records).

For every mutant — truncated at every line boundary and inside lines, bytes flipped, diffs that do
not apply, fields of the wrong type, times that are not times or go backwards, headers missing, bad
or repeated, special files — the recording is opened (or refused with one line), the replay model is
stepped through every snapshot (each one rebuilt from its frame and diffs; the full snapshot and the
screen's view at every full frame) and mark, and the report is built: no traceback, no hang
(pytest-timeout), bounded memory (the process's peak RSS for every mutant, tracemalloc's peak for a
sample). Then the replay screen itself on damaged files, a 3 GB file with no newline, and a crash
inside the replay TUI, which must make `cockpit replay` exit non-zero.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from plans.plan import default_plan
from session.recording.index import RecordingError
from session.recording.reader import Recording
from session.replay import Timeline
from session.report.document import report
from tests.recording_factory import drive_recording, make_drive_recording

ROOT = Path(__file__).resolve().parent.parent
PLAN = default_plan()
MEMORY_LIMIT = 64 << 20  # bytes a mutant may take to open, replay and report (the base takes ~3 MiB)
RSS_GROWTH = 256 << 20  # the process's peak RSS may not grow more than this over a whole family
TRACE_EVERY = 20  # every so many mutants, the traced peak is measured too (tracemalloc is slow)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    return make_drive_recording(tmp_path_factory.mktemp("corpus") / "base.jsonl").read_bytes()


def exercise(path: Path, *, views: bool = True) -> Recording | str:
    """Open `path`, step the replay model through every snapshot and mark (the screen's views at every
    full frame when `views`), and build the report. Returns the (closed) recording, or why it was refused."""
    try:
        rec = Recording.open(path)
    except RecordingError as exc:
        assert "\n" not in str(exc) and str(exc)
        return str(exc)
    with rec:
        tl = Timeline(rec)
        services = rec.info.services
        frames = set(rec.frame_at)
        prev = tl.start
        for i in range(len(rec.snaps) + 1):
            tl.seek(rec.snaps[i].ts if i < len(rec.snaps) else tl.end)
            if i < len(rec.snaps):
                rec.state(i)  # every diff applied in turn
            if i in frames or i >= len(rec.snaps) - 1:
                tl.snapshot()
                if views:
                    tl.view_at(PLAN, services)
            tl.records_between(prev, tl.pos)
            tl.lock_at(tl.pos)
            prev = tl.pos
        tl.rewind()
        for _ in range(len(tl.marks) + 1):
            if not tl.next_mark():
                break
        tl.records_tail(tl.pos, 50)
        while tl.prev_mark():
            pass
        tl.skip_idle = True
        tl.toggle()
        for _ in range(200):
            if not tl.tick(1.0):
                break
        tl.damage()
        text = report(rec, PLAN)
        assert text.startswith("# Change window") and "## Timeline" in text
        assert "\x1b" not in text and "\r" not in text
    return rec


def run_corpus(
    tmp: Path,
    mutants: Iterator[tuple[str, bytes]],
    *,
    views: bool = True,
    check: Callable[[str, Recording | str], None] | None = None,
) -> int:
    """Exercise every mutant; fail with the names of those that raised, refused badly or grew too big."""
    failures: list[str] = []
    n = 0
    path = tmp / "mutant.jsonl"
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10
    for name, data in mutants:
        n += 1
        path.unlink(missing_ok=True)
        path.write_bytes(data)
        traced = n % TRACE_EVERY == 1
        if traced:
            tracemalloc.start()
        try:
            out = exercise(path, views=views)
            if check is not None:
                check(name, out)
        except Exception as exc:  # collected, so one run names every mutant that fails
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
        finally:
            if traced:
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                if peak > MEMORY_LIMIT:
                    failures.append(f"{name}: traced peak {peak >> 20} MiB")
        grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss << 10) - rss0
        if grown > RSS_GROWTH:
            failures.append(f"{name}: peak RSS grew by {grown >> 20} MiB")
            break
    assert not failures, f"{len(failures)} of {n} mutants:\n" + "\n".join(failures[:30])
    return n


def lines_of(data: bytes) -> list[bytes]:
    return data.split(b"\n")[:-1]  # the file ends with a newline


def join(lines: list[bytes]) -> bytes:
    return b"".join(x + b"\n" for x in lines)


def damaged(rec: Recording | str) -> dict[int, str]:
    assert isinstance(rec, Recording), rec
    return rec.damaged


# -- the base itself ----------------------------------------------------------------------------------------


def test_the_base_recording_is_whole(base: bytes, tmp_path: Path) -> None:
    (tmp_path / "b.jsonl").write_bytes(base)
    rec = exercise(tmp_path / "b.jsonl")
    assert isinstance(rec, Recording)
    assert not rec.damaged and rec.cut_short is None and not rec.out_of_order
    assert len(rec.snaps) == 21 and len(set(rec.frame_at)) > 5
    kinds = {json.loads(x)["t"] for x in lines_of(base)}
    assert kinds == {
        "header",
        "frame",
        "diff",
        "verdict",
        "lock",
        "journal",
        "action",
        "event",
        "outcome",
        "note",
        "end",
    }


# -- truncation ----------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_truncated_at_every_line_boundary(base: bytes, tmp_path: Path) -> None:
    lines = lines_of(base)

    def check(name: str, out: Recording | str) -> None:
        k = int(name.split()[1])
        if k == 0:
            assert "empty file" in str(out)
        else:
            assert not damaged(out), name  # a whole line is never damage

    n = run_corpus(
        tmp_path, ((f"first {k} lines", join(lines[:k])) for k in range(len(lines) + 1)), views=False, check=check
    )
    assert n == len(lines) + 1


@pytest.mark.timeout(300)
def test_truncated_inside_every_line(base: bytes, tmp_path: Path) -> None:
    lines = lines_of(base)
    rnd = random.Random(5)

    def mutants() -> Iterator[tuple[str, bytes]]:
        for k, line in enumerate(lines):
            cut = rnd.randrange(1, len(line)) if len(line) > 1 else 1
            yield f"line {k + 1} cut at {cut}", join(lines[:k]) + line[:cut]

    def check(name: str, out: Recording | str) -> None:
        if name.startswith("line 1 "):
            assert isinstance(out, str)  # a cut header: refused, in one line
            return
        assert isinstance(out, Recording) and not out.damaged and out.cut_short is not None, name

    run_corpus(tmp_path, mutants(), views=False, check=check)


# -- bytes flipped -----------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_bytes_flipped(base: bytes, tmp_path: Path) -> None:
    rnd = random.Random(11)
    header_end = base.index(b"\n")

    def mutants() -> Iterator[tuple[str, bytes]]:
        for i in range(60):
            pos = rnd.randrange(header_end + 1, len(base))
            b = bytearray(base)
            new = rnd.choice([b[pos] ^ 0xFF, ord("\n"), ord('"'), ord("}"), 0, ord("9"), 0x1B])
            b[pos] = new
            yield f"flip {i}: byte {pos} to {new:#x}", bytes(b)

    run_corpus(tmp_path, mutants())


# -- diffs that do not apply ------------------------------------------------------------------------------


def _edit(lines: list[bytes], k: int, fn: Callable[[dict[str, Any]], Any]) -> bytes:
    obj = json.loads(lines[k])
    fn(obj)
    out = list(lines)
    out[k] = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    return join(out)


@pytest.mark.timeout(300)
def test_bad_diffs(base: bytes, tmp_path: Path) -> None:
    lines = lines_of(base)
    diffs = [k for k, x in enumerate(lines) if x.startswith(b'{"t":"diff"')]
    assert len(diffs) >= 8
    diffs = diffs[:: max(1, len(diffs) // 4)]  # a spread of them: first, middle, last of chains
    expect: dict[str, int] = {}  # mutant -> the line (1-based) that must be reported damaged

    def op(o: dict[str, Any]) -> dict[str, Any]:
        return {"t": "diff", "ts": o["ts"], "seq": o["seq"], "ops": o["ops"]}

    def mutants() -> Iterator[tuple[str, bytes]]:
        for k in diffs:
            edits: dict[str, Callable[[dict[str, Any]], Any]] = {
                "a path into nothing": lambda o: o.update(
                    ops=[{"op": "replace", "path": "/instances/no-such-host/x", "value": 1}]
                ),
                "a path through a value": lambda o: o.update(
                    ops=[{"op": "add", "path": "/taken_at/deeper", "value": 1}]
                ),
                "not a pointer": lambda o: o.update(ops=[{"op": "replace", "path": "taken_at", "value": 1}]),
                "an unknown op": lambda o: o.update(ops=[{"op": "move", "path": "/taken_at"}]),
                "ops not a list": lambda o: o.update(ops={"op": "replace"}),
                "the snapshot replaced by a number": lambda o: o.update(
                    ops=[{"op": "replace", "path": "", "value": 7}]
                ),
                "a field of the wrong type": lambda o: o.update(
                    ops=[{"op": "replace", "path": "/instances", "value": "many"}]
                ),
                "order of keys that are not there": lambda o: o.update(
                    ops=[{"op": "order", "path": "/instances", "keys": ["x", "y"]}]
                ),
            }
            for what, fn in edits.items():
                name = f"diff on line {k + 1}: {what}"
                if what not in ("order of keys that are not there",):
                    expect[name] = k + 1
                yield name, _edit(lines, k, fn)
            # the diff against a missing base: the one before it is gone
            if lines[k - 1].startswith(b'{"t":"diff"'):
                name = f"diff on line {k + 1} without its base"
                yield name, join(lines[: k - 1] + lines[k:])

    def check(name: str, out: Recording | str) -> None:
        d = damaged(out)
        if name in expect:
            assert expect[name] in d, (name, d)
        if name.endswith("without its base"):
            assert any("not in the file before it" in w for w in d.values()), (name, d)

    run_corpus(tmp_path, mutants(), check=check)


# -- fields of the wrong type --------------------------------------------------------------------------------


def wrong(value: Any) -> list[Any]:
    """Two values of other types than `value`: a scalar and a container."""
    if isinstance(value, bool):
        return ["yes", [True]]
    if isinstance(value, int | float):
        return ["7", {"x": 7}]
    if isinstance(value, str):
        return [7, [value]]
    if isinstance(value, list):
        return ["x", {"x": value[:1]}]
    if isinstance(value, dict):
        return [True, [1, "a"]]
    return [7, {"x": {"y": []}}]


@pytest.mark.timeout(300)
def test_fields_of_the_wrong_type(base: bytes, tmp_path: Path) -> None:
    lines = lines_of(base)
    first: dict[str, int] = {}
    for k, x in enumerate(lines[1:], 1):
        obj = json.loads(x)
        key = obj["t"] + ("/" + str(obj.get("kind")) if obj["t"] in ("action", "event") else "")
        first.setdefault(key, k)

    def mutants() -> Iterator[tuple[str, bytes]]:
        for key, k in first.items():
            obj = json.loads(lines[k])
            paths: list[tuple[str, ...]] = [(f,) for f in obj if f not in ("t",)]
            for f, v in obj.items():  # one level down too: the preview, the outcome, the holder, the entry
                if isinstance(v, dict):
                    paths += [(f, g) for g in list(v)[:8]]
            for path in paths:
                current: Any = obj
                for p in path:
                    current = current[p]
                for w in wrong(current):

                    def put(o: dict[str, Any], path: tuple[str, ...] = path, w: Any = w) -> None:
                        node = o
                        for p in path[:-1]:
                            node = node[p]
                        node[path[-1]] = w

                    yield f"{key} line {k + 1}: {'.'.join(path)} = {w!r}", _edit(lines, k, put)

    n = run_corpus(tmp_path, mutants(), views=False)
    assert n > 150


# -- times -----------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_bad_times(base: bytes, tmp_path: Path) -> None:
    lines = lines_of(base)
    rnd = random.Random(3)
    picks = sorted(rnd.sample(range(1, len(lines)), 8))

    def mutants() -> Iterator[tuple[str, bytes]]:
        for k in picks:
            for what, raw in (
                ("NaN", b"NaN"),
                ("Infinity", b"Infinity"),
                ("negative", b"-1"),
                ("a string", b'"08:00"'),
                ("far future", b"1e300"),
                ("not a number", b"1.2.3"),
                ("null", b"null"),
            ):
                line = lines[k]
                start = line.index(b'"ts":') + 5
                end = start
                while end < len(line) and line[end : end + 1] not in (b",", b"}"):
                    end += 1
                out = list(lines)
                out[k] = line[:start] + raw + line[end:]
                yield f"line {k + 1} ts {what}", join(out)
            # out of order: this line's time before the previous line's
            out = list(lines)
            obj = json.loads(out[k])
            obj["ts"] = json.loads(lines[1])["ts"] - 3600
            out[k] = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
            yield f"line {k + 1} an hour early", join(out)

    def check(name: str, out: Recording | str) -> None:
        k = int(name.split()[1])
        if name.endswith("an hour early"):
            assert isinstance(out, Recording) and (k in out.out_of_order or k in out.damaged), name
        else:
            assert k in damaged(out), name

    run_corpus(tmp_path, mutants(), check=check)


# -- headers -----------------------------------------------------------------------------------------------


@pytest.mark.timeout(300)
def test_bad_missing_and_repeated_headers(base: bytes, tmp_path: Path) -> None:
    lines = lines_of(base)
    header = json.loads(lines[0])

    def with_header(**changes: Any) -> bytes:
        return join([json.dumps({**header, **changes}).encode(), *lines[1:]])

    cases: list[tuple[str, bytes, str | None]] = [
        ("no header", join(lines[1:]), "not a Rollout Cockpit recording"),
        ("header not JSON", join([b"{nope", *lines[1:]]), "not JSON"),
        ("header a list", join([b"[1,2]", *lines[1:]]), "not a Rollout Cockpit recording"),
        ("version 2", with_header(version=2), "format version 2"),
        ("version a string", with_header(version="1"), "format version '1'"),
        ("another format", with_header(format="something-else"), "not a Rollout Cockpit recording"),
        ("header ts NaN", with_header(ts=float("nan")), "line 1"),
        ("header services not a list", with_header(services="api"), "line 1"),
        ("header env a number", with_header(env=5), "line 1"),
        ("header full_every 0", with_header(full_every=0), "line 1"),
        ("header mode unknown", with_header(mode="spectate"), "line 1"),
        ("a second header in the middle", join([*lines[:40], lines[0], *lines[40:]]), None),
        ("two recordings in one file", base + base, None),
        ("a blank first line", b"\n" + base, "not JSON"),
        ("a BOM (an editor's)", b"\xef\xbb\xbf" + base, None),
        ("empty", b"", "empty file"),
        ("only a newline", b"\n", "not JSON"),
        ("only the header", join(lines[:1]), None),
        ("binary", bytes(range(256)) * 64, "not JSON"),
    ]
    expected = {name: says for name, _, says in cases}

    def check(name: str, out: Recording | str) -> None:
        says = expected[name]
        if says is None:
            assert isinstance(out, Recording), (name, out)
            if "second" in name or "two" in name:
                assert any("a second header" in w for w in out.damaged.values()), (name, out.damaged)
        else:
            assert isinstance(out, str) and says in out, (name, out)

    run_corpus(tmp_path, ((name, data) for name, data, _ in cases), check=check)


# -- special files ----------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_special_files_never_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    loop = tmp_path / "loop.jsonl"
    loop.symlink_to(loop)
    unreadable = tmp_path / "secret.jsonl"
    unreadable.write_text("{}\n")
    for path, says in (
        (fifo, "named pipe"),
        (tmp_path, "directory"),
        (Path("/dev/zero"), "device"),
        (Path("/dev/null"), "device"),
        (loop, "cannot read"),
        (tmp_path / "none", "no such file"),
    ):
        out = exercise(path)
        assert isinstance(out, str) and says in out, (path, out)


@pytest.mark.timeout(300)
def test_three_gigabytes_without_a_newline_are_read_in_bounded_memory(base: bytes, tmp_path: Path) -> None:
    path = tmp_path / "huge.jsonl"
    head = join(lines_of(base)[:30])
    with path.open("wb") as fh:
        fh.write(head)
        fh.truncate(len(head) + (3 << 30))  # sparse: 3 GB of NULs, no newline, nothing on disk
    tracemalloc.start()
    try:
        with Recording.open(path) as rec:
            assert rec.damaged == {31: "longer than 16 MiB (and cut short)"}
            assert rec.snapshot(len(rec.snaps) - 1) is not None
            text = report(rec, PLAN)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "line 31: longer than 16 MiB" in text
    assert peak < 48 << 20, peak


# -- the replay screen on damaged files, and a crash inside it ------------------------------------------------


async def test_the_replay_screen_shows_damage_and_keeps_going(tmp_path: Path) -> None:
    from tui.app import make_app
    from tui.widgets.timeline import TimelineBar

    data = (await drive_recording(tmp_path / "base.jsonl")).read_bytes()
    lines = lines_of(data)
    diffs = [k for k, x in enumerate(lines) if x.startswith(b'{"t":"diff"')]
    bad = list(lines)
    bad[5] = b'{"t":"note","ts":1800000003.0,"te'  # not JSON
    bad[diffs[3]] = bad[diffs[3]].replace(b'"path":"/', b'"path":"/nowhere/', 1)  # a diff that does not apply
    bad.insert(12, b"\x00\x01garbage\x1b[2J")
    path = tmp_path / "bad.jsonl"
    path.write_bytes(join(bad))
    rec = Recording.open(path)
    assert set(rec.damaged) == {13}  # found on open; the others when they are used
    app = make_app("replay", recording=rec)
    async with app.run_test(size=(110, 32)) as pilot:
        await pilot.pause()
        for key in (
            "dollar_sign",
            "0",
            "n",
            "n",
            "n",
            "n",
            "n",
            "n",
            "full_stop",
            "greater_than_sign",
            "p",
            "less_than_sign",
            "comma",
            "dollar_sign",
        ):
            await pilot.press(key)
            await pilot.pause()
        for ts in rec.times:  # step through every snapshot, as "." does
            app.main.goto(ts)  # type: ignore[attr-defined]
            await pilot.pause()
        assert app.is_running and app.screen is app.main
        bar = str(app.main.query_one("#timeline", TimelineBar).render())
        assert set(rec.damaged) == {6, 13, diffs[3] + 2}
        assert f"⚠{len(rec.damaged)} damaged" in bar
        app.main.goto(rec.end)  # type: ignore[attr-defined]
        await pilot.press("4")  # the Events tab: the log renders what it holds once it is shown
        await pilot.pause()
        events = app.main.query_one("#events")
        shown = "\n".join(line.text for line in events.lines)
        assert "line 6 of the recording is damaged and was skipped: not JSON" in shown
        assert "line 13 of the recording is damaged and was skipped" in shown and "\x1b" not in shown


CRASHING_REPLAY = """
import sys
import tui.screens.replaying as replaying

def boom(self, *a, **k):
    raise RuntimeError("a bug in the replay screen")

replaying.ReplayScreen.goto = boom
from cli.main import main
sys.exit(main(["replay", sys.argv[1]]))
"""


@pytest.mark.timeout(120)
def test_a_crash_inside_the_replay_tui_exits_non_zero(base: bytes, tmp_path: Path) -> None:
    import pty
    import select

    path = tmp_path / "r.jsonl"
    path.write_bytes(base)
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHING_REPLAY, str(path)],
        cwd=ROOT,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    out = b""
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 60)
            if not ready:
                break
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child is gone: EIO on the master
                break
            if not chunk:
                break
            out += chunk
        code = proc.wait(timeout=60)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    assert code != 0, out[-2000:]
    assert b"a bug in the replay screen" in out
