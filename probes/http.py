"""HTTP GETs over kept connections (the instances' health checks, through their SSH tunnels)."""

from __future__ import annotations

import asyncio

__all__ = ["KeptHttp"]

MAX_BODY = 65536


class KeptHttp:
    """`GET`s that keep one HTTP/1.1 connection per key (an instance) between rounds.

    A new connection per round would open, and close, an SSH channel per instance per round through
    the bastion — a third of a warm round's CPU at 50 instances. A server that does not keep the
    connection (HTTP/1.0, `Connection: close`, no Content-Length, a large body) gets a new one each
    time; a kept connection found closed is replaced once. The caller bounds the time
    (`asyncio.timeout`); a connection interrupted by it is closed, never kept.
    """

    def __init__(self) -> None:
        self._kept: dict[str, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}

    def kept(self, key: str) -> bool:
        return key in self._kept

    async def get(self, key: str, ep: tuple[str, int], path: str, hostname: str) -> bytes:
        """The status line (`HTTP/1.1 200 OK\\r\\n`) of `GET path` on `ep`."""
        kept = self._kept.pop(key, None)
        for conn in ([kept] if kept else []) + [None]:
            reader, writer = conn if conn is not None else await asyncio.open_connection(*ep)
            try:
                writer.write(f"GET {path} HTTP/1.1\r\nHost: {hostname}\r\n\r\n".encode())
                await writer.drain()
                status = await reader.readline()
                if not status:
                    raise ConnectionResetError("closed before answering")
                headers: dict[str, str] = {}
                while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip().lower()
                length = int(headers.get("content-length", "-1"))
                if 0 <= length <= MAX_BODY:
                    await reader.readexactly(length)
                if status.startswith(b"HTTP/1.1") and 0 <= length <= MAX_BODY and headers.get("connection") != "close":
                    self._kept[key] = (reader, writer)
                else:
                    writer.close()
                return status
            except (ConnectionError, asyncio.IncompleteReadError):
                writer.close()
                if conn is None:
                    raise
            except BaseException:
                writer.close()
                raise
        raise ConnectionResetError("no connection")  # not reached: the last attempt returns or raises

    def close(self) -> None:
        for _, writer in self._kept.values():
            writer.close()
        self._kept.clear()
