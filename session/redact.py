"""Redaction: the pass every recorded string goes through before it reaches a file.

Three rules (docs/recording.md, "Redaction"): the value under a key whose name says "secret"
(PASSWORD, TOKEN, *_KEY_B64, …); PEM private keys and `NAME=value` / URL credentials inside
strings; long base64 blobs. Known secret values (the lab's passwords, when the caller knows them)
are removed wherever they appear. Values only: what is said *about* a secret — which services
hold it, which disagree on it, where it comes from — stays readable (`public` names). Results
are memoised, because a recording redacts the same strings every second. No textual here: the
recorder and `cockpit replay --report` share it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

REDACTED: Final = "[redacted]"

# A key (JSON field, env var, evidence name) whose value is a secret, after upper-casing and "-" → "_".
_SECRET_KEY = re.compile(
    r"(?:^|_)(?:PASSWORD|PASSWD|PASSPHRASE|PWD|SECRET|SECRETS|TOKEN|CREDENTIALS?|APIKEY|REQUIREPASS|MASTERAUTH)"
    r"(?:_|$)|(?:PRIVATE_KEY|SECRET_KEY|ACCESS_KEY|API_KEY|TLS_KEY|SSH_KEY|_KEY_B64|_KEY_PEM)(?:_|$)"
)
# ... unless the name says it only names or locates the secret.
_NAMES_ONLY = re.compile(r"_(?:NAME|PATH|FILE|SUFFIX|ID|ARN|KEY|VAR|LAYOUT)$")

_PEM_PRIVATE = re.compile(r"-----BEGIN ([A-Z0-9 ]*PRIVATE KEY)-----.*?(?:-----END \1-----|\Z)", re.DOTALL)
# NAME=value, NAME: value, "NAME": "value" where NAME is secret-like
_ASSIGN = re.compile(
    r"""(?P<name>[A-Za-z0-9_.-]*(?:PASSWORD|PASSWD|PASSPHRASE|SECRET|TOKEN|PRIVATE_KEY|KEY_B64|REQUIREPASS|"""
    r"""MASTERAUTH|password|passwd|passphrase|secret|token|private_key|key_b64|requirepass|masterauth)"""
    r"""[A-Za-z0-9_.-]*)(?P<sep>["']?\s*[:=]\s*|\s+(?=["']))(?P<q>["']?)(?P<value>[^\s"',;}&]+)"""
)
# redis-cli -a PASS / --pass PASS / --password PASS, requirepass PASS
_FLAG = re.compile(
    r"(?P<pre>(?:^|\s)(?:-a|--pass|--password|requirepass|masterauth)\s+)(?P<q>[\"']?)(?P<value>[^\s\"']+)"
)
# scheme://user:password@host
_URL = re.compile(r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:)(?P<value>[^@\s/]+)(?=@)")
_BLOB = re.compile(r"[A-Za-z0-9+/]{40,}={0,2}|[A-Za-z0-9_-]{40,}")
_HEX = re.compile(r"[0-9a-fA-F]+\Z")
# Fields of an object under a secret-named key that hold the secret itself.
_VALUE_FIELDS = frozenset({"value", "values", "secret", "plain", "pem", "b64", "data"})


def secret_key(name: str) -> bool:
    """True when a field called `name` holds a secret (its value must not be written)."""
    n = name.upper().replace("-", "_").replace(".", "_")
    if _NAMES_ONLY.search(n) and not n.endswith(
        ("PRIVATE_KEY", "SECRET_KEY", "ACCESS_KEY", "API_KEY", "TLS_KEY", "SSH_KEY")
    ):
        return False
    return _SECRET_KEY.search(n) is not None


def _blob(m: re.Match[str]) -> str:
    s = m.group(0)
    core = s.rstrip("=")
    if _HEX.match(core):
        return s  # a fingerprint or digest, not a secret
    has = (any(c.isdigit() for c in core), any(c.isupper() for c in core), any(c.islower() for c in core))
    return REDACTED if all(has) else s


class Redactor:
    """Redacts strings and JSON-like values; `known` are literal secret values to remove anywhere."""

    def __init__(self, known: Iterable[str] = (), *, public: Iterable[str] = (), cache_size: int = 200_000) -> None:
        self._known = sorted({k for k in known if k and len(k) >= 4}, key=len, reverse=True)
        self._public: set[str] = set()
        self._cache: dict[str, str] = {}
        self._cache_size = cache_size
        self.add_public(public)

    def add_public(self, names: Iterable[str]) -> None:
        """Names that are never secret values (services, hosts): kept when a list under a secret-named
        field lists them, e.g. the services that disagree on INTERNAL_TLS_KEY_B64."""
        for n in names:
            if isinstance(n, str) and n and n not in self._public and n not in self._known:
                self._public.add(n)

    def add_known(self, values: Iterable[str]) -> None:
        self._known = sorted({*self._known, *(v for v in values if v and len(v) >= 4)}, key=len, reverse=True)
        self._cache.clear()

    def text(self, s: str) -> str:
        """`s` with every secret inside it replaced by "[redacted]"."""
        hit = self._cache.get(s)
        if hit is not None:
            return hit
        out = s
        for k in self._known:
            if k in out:
                out = out.replace(k, REDACTED)
        if "PRIVATE KEY" in out:
            out = _PEM_PRIVATE.sub(lambda m: f"-----BEGIN {m.group(1)}-----{REDACTED}-----END {m.group(1)}-----", out)
        if len(out) >= 6:
            out = _ASSIGN.sub(
                lambda m: (
                    f"{m.group('name')}{m.group('sep')}{m.group('q')}{REDACTED}"
                    if m.group("value") != REDACTED
                    else m.group(0)
                ),
                out,
            )
            out = _FLAG.sub(lambda m: f"{m.group('pre')}{m.group('q')}{REDACTED}", out)
            if "://" in out:
                out = _URL.sub(lambda m: f"{m.group('pre')}{REDACTED}", out)
        if len(out) >= 40:
            out = _BLOB.sub(_blob, out)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[s] = out
        return out

    def value(self, obj: Any, key: str | None = None) -> Any:
        """A copy of `obj` (JSON-like) with secrets redacted; `key` is the field name `obj` sits under."""
        if key is not None and secret_key(key):
            return self._blank(obj)
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, Mapping):
            return {k: self.value(v, str(k)) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [self.value(v) for v in obj]
        return obj

    def _blank(self, obj: Any) -> Any:
        """The value under a secret-named key: a string becomes "[redacted]"; in an object, its `value`
        (a configured value) and its secret-named fields are blanked and the rest is redacted as usual
        (`source`, `version`, `groups`, `missing` stay); in a list, strings are blanked unless they are
        public names (the services that hold or lack the secret)."""
        if isinstance(obj, str):
            return REDACTED if obj else obj
        if isinstance(obj, Mapping):  # where it came from, why it is unknown: not the secret
            return {
                k: self._blank(v) if str(k) in _VALUE_FIELDS or secret_key(str(k)) else self.value(v, str(k))
                for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [v if isinstance(v, str) and v in self._public else self._blank(v) for v in obj]
        return obj
