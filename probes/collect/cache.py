"""One small time-to-live cache, for the answers a round may reuse (config, listeners, healthy probes)."""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Values kept for `ttl` seconds after they were put; `clear()` forgets everything at once."""

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._items: dict[K, tuple[float, V]] = {}

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if self._clock() - item[0] >= self.ttl:
            del self._items[key]
            return None
        return item[1]

    def put(self, key: K, value: V) -> V:
        self._items[key] = (self._clock(), value)
        return value

    def pop(self, key: K) -> None:
        self._items.pop(key, None)

    def clear(self) -> None:
        self._items.clear()

    def __contains__(self, key: K) -> bool:
        return self.get(key) is not None
