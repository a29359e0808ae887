"""The recording format's constants, its vocabularies, and the field readers every record parses with.

Each field reader names the field it refuses (`RecordError`): parsing is strict about types and
lenient about absence (docs/recording.md). No textual here.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any, Final, Literal, TypeAlias, TypeVar, get_args

FORMAT: Final = "rollout-cockpit-recording"
FORMAT_VERSION: Final = 1
MAX_TIME: Final = 253402300799.0  # 9999-12-31T23:59:59Z: a later "time" is damage, not a time

Json: TypeAlias = Any


class RecordError(ValueError):
    """A line of a known type whose fields are not what the format says; the message names the field."""


class RecordType(enum.StrEnum):
    HEADER = "header"
    FRAME = "frame"
    DIFF = "diff"
    VERDICT = "verdict"
    LOCK = "lock"
    JOURNAL = "journal"
    ACTION = "action"
    EVENT = "event"
    OUTCOME = "outcome"
    NOTE = "note"
    END = "end"


class ActionKind(enum.StrEnum):
    """What the driving session did (drive mode), one record each."""

    LOCK = "lock"
    LOCK_REFUSED = "lock-refused"
    PREVIEW = "preview"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    ERROR = "error"
    UNLOCK = "unlock"
    REFUSED = "refused"


class Direction(enum.StrEnum):
    ADVANCE = "advance"
    ROLLBACK = "rollback"
    RESTART = "restart"  # a restart-only action (plans.engine preview_restart): step "restart"


class EventKind(enum.StrEnum):
    """The engine's progress events; a kind this reader does not know is kept as its text."""

    PREFLIGHT = "preflight"
    WRITE = "write"
    RESTART = "restart"
    OUTPUT = "output"
    INSTANCE_DONE = "instance-done"
    VERIFY = "verify"
    DONE = "done"
    ERROR = "error"
    PAUSED = "paused"
    RESUMED = "resumed"
    STOPPING = "stopping"
    JOURNAL = "journal"
    DIAGNOSTICS = "diagnostics"
    ROLLBACK = "rollback"


EVENT_KINDS: Final = frozenset(k.value for k in EventKind)

Mode = Literal["drive", "watch", "replay"]  # "replay": the null recorder of a replaying app (writes nothing)
NoteLevel = Literal["info", "warn", "error"]
DiffOpKind = Literal["add", "remove", "replace", "order"]


# --------------------------------------------------------------------------------------------
# field readers: each names the field it refuses


def as_object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RecordError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def required(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise RecordError(f"{where}: missing field {key!r}")
    return d[key]


def as_str(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise RecordError(f"{where}: expected text, got {type(value).__name__}")
    return value


def as_opt_str(value: Any, where: str) -> str | None:
    return None if value is None else as_str(value, where)


def text_field(d: Mapping[str, Any], key: str, where: str, default: str = "") -> str:
    """An optional text field: absent or null -> `default`."""
    v = d.get(key)
    return default if v is None else as_str(v, f"{where}.{key}")


def as_bool(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise RecordError(f"{where}: expected true/false, got {type(value).__name__}")
    return value


def as_num(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RecordError(f"{where}: expected a number, got {type(value).__name__}")
    f = float(value)
    if not math.isfinite(f):
        raise RecordError(f"{where}: not a finite number ({value!r})")
    return f


def as_int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RecordError(f"{where}: expected a whole number, got {type(value).__name__}")
    return value


def as_opt_int(value: Any, where: str) -> int | None:
    return None if value is None else as_int(value, where)


def as_time(value: Any, where: str) -> float:
    """Epoch seconds: a finite number, not before 1970."""
    t = as_num(value, where)
    if t < 0:
        raise RecordError(f"{where}: a time before 1970 ({value!r})")
    if t > MAX_TIME:
        raise RecordError(f"{where}: a time after the year 9999 ({value!r})")
    return t


def as_opt_time(value: Any, where: str) -> float | None:
    return None if value is None else as_time(value, where)


def as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list | tuple):
        raise RecordError(f"{where}: expected a list, got {type(value).__name__}")
    return list(value)


def as_strs(value: Any, where: str) -> tuple[str, ...]:
    return tuple(as_str(v, f"{where}[{i}]") for i, v in enumerate(as_list(value, where)))


_E = TypeVar("_E", bound=enum.StrEnum)


def as_enum(cls: type[_E], value: Any, where: str) -> _E:
    s = as_str(value, where)
    try:
        return cls(s)
    except ValueError:
        raise RecordError(f"{where}: {s!r} is not one of {', '.join(m.value for m in cls)}") from None


def as_literal(allowed: Any, value: Any, where: str) -> str:
    s = as_str(value, where)
    options = get_args(allowed)
    if s not in options:
        raise RecordError(f"{where}: {s!r} is not one of {', '.join(options)}")
    return s


def drop_none(d: dict[str, Json]) -> dict[str, Json]:
    return {k: v for k, v in d.items() if v is not None}
