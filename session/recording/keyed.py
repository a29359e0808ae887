"""A snapshot's keyed form, as a recording stores it, and the diffs between two of them.

Lists of objects that have an identity (instances, checks, connections) become objects keyed by that
identity (`KEYED_LISTS`), so a change is a change of one entry, not a shift of a whole list; `diff`
turns one keyed snapshot into the next as JSON-Pointer operations and `apply_ops` replays them.
docs/recording.md describes the form. No textual here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from session.recording.records import DiffOp

# Lists of objects diffed by identity, not position: path (with "*" for any key) -> identity fields.
KEYED_LISTS: Final[Mapping[tuple[str, ...], tuple[str, ...]]] = {
    ("instances",): ("host",),
    ("instances", "*", "checks"): ("check", "target"),
    ("checks",): ("check", "target"),
    ("certs",): ("check", "target"),
    ("database", "checks"): ("check", "target"),
    ("database", "connections"): ("leg", "addr"),  # schema 1
    ("database", "legs", "*", "connections"): ("leg", "addr"),  # schema 2
}
# Fields a diff ignores inside check results (timings that change every round): carried by full frames only.
VOLATILE: Final = frozenset({"duration_ms"})
# Clocks inside a check's evidence (a probe's "now", connection ages, round-trip times; any "*_ms"):
# carried by full frames only, like VOLATILE.
VOLATILE_EVIDENCE: Final = frozenset({"now", "age", "idle", "age_s", "idle_s"})

Json = Any


def escape_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _unesc(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def pointer(path: Sequence[str]) -> str:
    """["database", "checks", "tls.x a:/b"] -> "/database/checks/tls.x a:~1b" (RFC 6901)."""
    return "".join("/" + escape_token(p) for p in path)


def parse_pointer(p: str) -> list[str]:
    if p == "":
        return []
    if not p.startswith("/"):
        raise ValueError(f"bad pointer {p!r}")
    return [_unesc(x) for x in p[1:].split("/")]


def keyed_list(items: Sequence[Json], fields: tuple[str, ...], path: tuple[str, ...]) -> dict[str, Json]:
    out: dict[str, Json] = {}
    for item in items:
        base = " ".join(str(item.get(f, "")) for f in fields)
        key = base
        n = 1
        while key in out:
            n += 1
            key = f"{base} #{n}"
        out[key] = _keyed(item, (*path, "*"))
    return out


def _keyed(obj: Json, path: tuple[str, ...]) -> Json:
    if isinstance(obj, dict):
        out: dict[str, Json] = {}
        for k, v in obj.items():
            p = (*path, k)
            fields = KEYED_LISTS.get(_generic(p))
            if fields is not None and isinstance(v, list):
                out[k] = keyed_list(v, fields, p)
            else:
                out[k] = _keyed(v, p)
        return out
    return obj


def _generic(path: tuple[str, ...]) -> tuple[str, ...]:
    # ("instances", "staging-api-01", "checks") -> ("instances", "*", "checks");
    # ("database", "legs", "leg1", "connections") -> ("database", "legs", "*", "connections")
    if len(path) == 3 and path[0] == "instances":
        return ("instances", "*", path[2])
    if len(path) == 4 and path[:2] == ("database", "legs"):
        return ("database", "legs", "*", path[3])
    return path


def keyed(snapshot_json: Mapping[str, Json]) -> dict[str, Json]:
    """The snapshot JSON (docs/snapshot.md) with its identity lists turned into objects (KEYED_LISTS)."""
    out = _keyed(dict(snapshot_json), ())
    assert isinstance(out, dict)
    return out


def _unkeyed(obj: Json, path: tuple[str, ...]) -> Json:
    if isinstance(obj, dict):
        out: dict[str, Json] = {}
        for k, v in obj.items():
            p = (*path, k)
            if _generic(p) in KEYED_LISTS and isinstance(v, dict):
                out[k] = [_unkeyed(x, (*p, "*")) for x in v.values()]
            else:
                out[k] = _unkeyed(v, p)
        return out
    return obj


def unkeyed(state: Mapping[str, Json]) -> dict[str, Json]:
    """Inverse of `keyed`: back to the snapshot JSON."""
    out = _unkeyed(dict(state), ())
    assert isinstance(out, dict)
    return out


# -- normalisation: what a recording stores is the snapshot with its volatile order removed ------------


def is_unordered(value: Json) -> bool:
    """A list of observed connections (objects with an `addr`), in whatever order the server listed them."""
    return isinstance(value, list) and len(value) > 1 and all(isinstance(x, dict) and "addr" in x for x in value)


def sort_key(item: Json) -> str:
    return repr(sorted(item.items())) if isinstance(item, dict) else repr(item)


def normal_check(check_json: Mapping[str, Json]) -> dict[str, Json]:
    """A check result's JSON with the lists of observed connections in its evidence sorted."""
    out = dict(check_json)
    ev = out.get("evidence")
    if isinstance(ev, Mapping) and any(is_unordered(v) for v in ev.values()):
        out["evidence"] = {k: sorted(v, key=sort_key) if is_unordered(v) else v for k, v in ev.items()}
    return out


def sorted_keyed(d: dict[str, Json]) -> dict[str, Json]:
    return dict(sorted(d.items()))


def normalised(snapshot_json: Mapping[str, Json]) -> dict[str, Json]:
    """The snapshot JSON as a recording stores it (and a replay gives it back): observed connections
    sorted by their identity, connection lists inside check evidence sorted. Nothing else changes."""
    state = keyed(snapshot_json)

    def checks(d: Json) -> Json:
        return {k: normal_check(v) if isinstance(v, Mapping) else v for k, v in d.items()} if isinstance(d, dict) else d

    for name in ("checks", "certs"):
        state[name] = checks(state.get(name))
    db = state.get("database")
    if isinstance(db, dict):
        db = dict(db)
        db["checks"] = checks(db.get("checks"))
        if isinstance(db.get("connections"), dict):  # schema 1
            db["connections"] = sorted_keyed(db["connections"])
        if isinstance(db.get("legs"), dict):
            db["legs"] = {
                leg: {**v, "connections": sorted_keyed(v["connections"])}
                if isinstance(v, dict) and isinstance(v.get("connections"), dict)
                else v
                for leg, v in db["legs"].items()
            }
        state["database"] = db
    insts = state.get("instances")
    if isinstance(insts, dict):
        state["instances"] = {
            h: {**i, "checks": checks(i.get("checks"))} if isinstance(i, dict) else i for h, i in insts.items()
        }
    return unkeyed(state)


def is_volatile(key: str, in_check: bool, in_evidence: bool) -> bool:
    if in_check and key in VOLATILE:
        return True
    return in_evidence and (key in VOLATILE_EVIDENCE or key.endswith("_ms"))


def diff(old: Json, new: Json, path: list[str] | None = None, ops: list[DiffOp] | None = None) -> list[DiffOp]:
    """Operations turning `old` into `new` (keyed forms): add, remove, replace, order.

    Inside check results, the timings (VOLATILE) and the clocks in evidence (VOLATILE_EVIDENCE, any
    "*_ms") are ignored: they change every round and are carried by full frames only.
    """
    path = [] if path is None else path
    ops = [] if ops is None else ops
    if isinstance(old, dict) and isinstance(new, dict):
        in_check = "checks" in path or "certs" in path
        in_evidence = in_check and "evidence" in path
        removed = [k for k in old if k not in new and not is_volatile(k, in_check, in_evidence)]
        for k in removed:
            ops.append(DiffOp("remove", pointer([*path, k])))
        added: list[str] = []
        for k, v in new.items():
            if is_volatile(k, in_check, in_evidence):
                continue
            if k not in old:
                ops.append(DiffOp("add", pointer([*path, k]), v))
                added.append(k)
            else:
                ov = old[k]
                if ov is v or (ov == v and type(ov) is type(v)):
                    continue
                diff(ov, v, [*path, k], ops)
        if removed or added:
            expect = [k for k in old if k in new and not is_volatile(k, in_check, in_evidence)] + added
            order = [k for k in new if not is_volatile(k, in_check, in_evidence)]
            if expect != order:
                ops.append(DiffOp("order", pointer(path), keys=tuple(order)))
        return ops
    if old != new or type(old) is not type(new):
        ops.append(DiffOp("replace", pointer(path), new))
    return ops


def shape_error(state: Json, paths: Sequence[str]) -> str | None:
    """Why `state` is not a keyed snapshot where `paths` (JSON Pointers a diff touched) changed it, or None:
    a keyed list, one of its entries, or the database must stay an object. (Leaf values are left to the
    snapshot reader.)"""
    if not isinstance(state, dict):
        return f"the snapshot is {type(state).__name__}, not an object"
    for p in paths:
        try:
            parts = parse_pointer(p)
        except ValueError:
            return f"bad pointer {p!r}"
        node: Json = state
        walked: list[str] = []
        for part in parts[:3]:
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
            walked.append(part)
            g = _generic(tuple(walked))
            entry = len(walked) > 1 and _generic(tuple(walked[:-1])) in KEYED_LISTS
            if (g in KEYED_LISTS or entry) and not isinstance(node, dict):
                return f"{pointer(walked)} is {type(node).__name__}, not an object"
            if walked == ["database"] and node is not None and not isinstance(node, dict):
                return f"/database is {type(node).__name__}, not an object or null"
    return None


def _ordered(target: Json, keys: Sequence[str]) -> dict[str, Json]:
    """`target`'s entries in the order of `keys`; entries `keys` does not name stay, at the end."""
    if not isinstance(target, dict):
        raise TypeError(f"order applied to {type(target).__name__}, not an object")
    out = {k: target[k] for k in keys if k in target}
    out.update((k, v) for k, v in target.items() if k not in out)
    return out


def apply_ops(state: Json, ops: Sequence[DiffOp | Mapping[str, Json]]) -> Json:
    """`state` with `ops` applied. Containers on each op's path are copied, never mutated, so a
    snapshot built from an earlier state stays as it was. Raises KeyError/TypeError/ValueError
    for an op whose path is not in `state` (the reader counts that diff as damaged)."""
    for raw in ops:
        op = raw if isinstance(raw, DiffOp) else DiffOp.from_json(raw, "op")
        parts = parse_pointer(op.path)
        if not parts:
            if op.op == "replace":
                state = op.value
            elif op.op == "order":
                state = _ordered(state, op.keys)
            continue
        if not isinstance(state, dict):
            raise TypeError(f"{op.path}: the snapshot is {type(state).__name__}, not an object")
        root = dict(state)
        node = root
        for part in parts[:-1]:
            child = node[part]
            if not isinstance(child, dict):
                raise TypeError(f"{op.path}: {part!r} is {type(child).__name__}, not an object")
            child = dict(child)
            node[part] = child
            node = child
        last = parts[-1]
        if op.op in ("add", "replace"):
            node[last] = op.value
        elif op.op == "remove":
            node.pop(last, None)
        else:
            node[last] = _ordered(node[last], op.keys)
        state = root
    return state
