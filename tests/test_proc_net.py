"""Reading the DB host's listeners from /proc/net/tcp{,6}: the head that holds them, and the ports."""

from __future__ import annotations

from probes.collect import listening_ports, past_listeners

HEADER = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"


def line(n: int, local: str, remote: str, state: str) -> str:
    return f"  {n}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000  0 0 1 1 0 100 0 0 10 0\n"


LISTEN_5432 = line(0, "020A007F:1538", "00000000:0000", "0A")  # 127.0.10.2:5432
LISTEN_ANY_6379 = line(1, "00000000:18EB", "00000000:0000", "0A")  # 0.0.0.0:6379
LISTEN_OTHER = line(2, "030A007F:1538", "00000000:0000", "0A")  # 127.0.10.3:5432: another address
ESTABLISHED = line(3, "020A007F:1920", "0A0A007F:C350", "01")


def test_the_head_ends_at_the_first_socket_that_does_not_listen() -> None:
    text = HEADER + LISTEN_5432 + LISTEN_ANY_6379 + LISTEN_OTHER
    assert not past_listeners(text.encode())  # listeners only: keep reading
    assert past_listeners((text + ESTABLISHED).encode())
    assert not past_listeners((text + ESTABLISHED[:20]).encode())  # an incomplete line decides nothing
    assert not past_listeners(HEADER.encode())


def test_ports_listening_on_the_address_or_any() -> None:
    text = HEADER + LISTEN_5432 + LISTEN_ANY_6379 + LISTEN_OTHER + ESTABLISHED
    assert listening_ports(text, "127.0.10.2") == {5432, 6379}
    assert listening_ports(text, "127.0.10.9") == {6379}
