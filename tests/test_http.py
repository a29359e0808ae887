"""Health GETs over kept connections: kept when the server keeps them, new otherwise, replaced once
when a kept one turns out closed."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from probes.http import KeptHttp


async def serve(answer: Callable[[int], bytes | None]) -> tuple[asyncio.Server, list[int]]:
    """A server answering request n (over all its connections) with answer(n); None closes at once.
    Returns the server and a list that counts accepted connections."""
    accepted: list[int] = []
    n = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal n
        accepted.append(1)
        while True:
            line = await reader.readline()
            if not line:
                break
            while await reader.readline() not in (b"\r\n", b""):
                pass
            n += 1
            data = answer(n)
            if data is None:
                break
            writer.write(data)
            await writer.drain()
            if b"Connection: close" in data or data.startswith(b"HTTP/1.0"):
                break
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0), accepted


def ok(extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + extra + b"\r\nok"


async def test_a_kept_connection_is_reused() -> None:
    server, accepted = await serve(lambda n: ok())
    ep = server.sockets[0].getsockname()[:2]
    http = KeptHttp()
    try:
        for _ in range(3):
            assert (await http.get("h", ep, "/health", "h")).startswith(b"HTTP/1.1 200")
        assert len(accepted) == 1 and http.kept("h")
    finally:
        http.close()
        server.close()


async def test_a_server_that_closes_gets_a_new_connection_each_time() -> None:
    for answer in (
        lambda n: ok(b"Connection: close\r\n"),
        lambda n: b"HTTP/1.0 503 Service Unavailable\r\n\r\n",
        lambda n: b"HTTP/1.1 200 OK\r\n\r\nno length",
    ):
        server, accepted = await serve(answer)
        ep = server.sockets[0].getsockname()[:2]
        http = KeptHttp()
        try:
            first = await http.get("h", ep, "/health", "h")
            await http.get("h", ep, "/health", "h")
            assert first.split()[1] in (b"200", b"503") and len(accepted) == 2 and not http.kept("h")
        finally:
            http.close()
            server.close()


async def test_a_kept_connection_found_closed_is_replaced_once() -> None:
    # the server answers the first request, then drops that connection when the next one comes
    server, accepted = await serve(lambda n: None if n == 2 else ok())
    ep = server.sockets[0].getsockname()[:2]
    http = KeptHttp()
    try:
        assert (await http.get("h", ep, "/", "h")).startswith(b"HTTP/1.1 200")
        assert (await http.get("h", ep, "/", "h")).startswith(b"HTTP/1.1 200")  # on a new connection
        assert len(accepted) == 2 and http.kept("h")
    finally:
        http.close()
        server.close()


async def test_a_server_that_never_answers_raises() -> None:
    server, _ = await serve(lambda n: None)
    ep = server.sockets[0].getsockname()[:2]
    http = KeptHttp()
    try:
        try:
            await http.get("h", ep, "/", "h")
        except ConnectionError:
            pass
        else:
            raise AssertionError("no answer must raise")
        assert not http.kept("h")
    finally:
        server.close()
