"""Who is connected on each leg, as the servers say: PgBouncer's SHOW CLIENTS (leg 1: app → PgBouncer) and
SHOW SERVERS (leg 2: PgBouncer → Postgres), Postgres's pg_stat_ssl (direct Postgres clients), Redis's CLIENT
LIST — each connection attributed to the inventory host whose address it comes from.

The cockpit's own connections — this cockpit's and any other's (watchers) — are told apart by their
application / client name (`rollout-cockpit-probe…`) and never counted on a leg: they are not evidence
about the fleet; `LegView.own` counts them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from inventory.model import Host
from probes.model import CheckResult, Unknown, Verdict, Why
from probes.pgbouncer import PgBouncerFacts
from probes.postgres import PostgresFacts
from probes.redis import RedisFacts
from probes.snapshot import Connection, Leg, LegView

OWN_PREFIX = "rollout-cockpit-probe"  # application_name / CLIENT SETNAME of every cockpit's probes

Legs = dict[Leg, LegView | Unknown]


def is_own(name: str) -> bool:
    return name.startswith(OWN_PREFIX)


def unknown_of(results: tuple[CheckResult, ...], default: str) -> Unknown:
    """Why a server's facts could not be read: its first could-not-measure, else its first failure."""
    for r in results:
        if r.verdict is Verdict.ERROR and r.unknown is not None:
            return r.unknown
    for r in results:
        if r.verdict is Verdict.FAIL:
            return Unknown(Why.UNREACHABLE, r.summary)
    return Unknown(Why.NOT_CHECKED, default)


def _missing(facts: Any, what: str, no_creds: bool) -> Unknown:
    if facts is None:
        return Unknown(Why.NO_CREDENTIALS if no_creds else Why.NOT_CHECKED, f"{what}: no session")
    return unknown_of(facts.results, f"{what} could not be read")


def _who(addr_map: Mapping[str, Host], addr: str) -> str | None:
    h = addr_map.get(addr)
    return h.name if h is not None else None


def legs(
    pg_f: PostgresFacts | None,
    pb_f: PgBouncerFacts | None,
    rd_f: RedisFacts | None,
    addr_map: Mapping[str, Host],
    db: Host,
    no_creds: bool,
) -> tuple[Legs, str | Unknown]:
    """Every leg's connections (or why it is unknown), and the OTel collector's Redis listener."""
    out: Legs = {}
    out.update(_bouncer_legs(pb_f, addr_map, no_creds))
    out["postgres"] = _postgres_leg(pg_f, pb_f, addr_map, db, no_creds)
    out["redis"], otel = _redis_leg(rd_f, addr_map, no_creds)
    return out, otel


def _bouncer_legs(pb_f: PgBouncerFacts | None, addr_map: Mapping[str, Host], no_creds: bool) -> Legs:
    """Leg 1 from SHOW CLIENTS, leg 2 from SHOW SERVERS (a server linked to an own client is own too)."""
    if pb_f is None or pb_f.clients is None:
        gone = _missing(pb_f, "PgBouncer's SHOW CLIENTS", no_creds)
        return {"leg1": gone, "leg2": gone}
    own = [c for c in pb_f.clients if is_own(c.application_name)]
    own_ptrs = {c.ptr for c in own if c.ptr}
    out: Legs = {
        "leg1": LegView(
            tuple(
                Connection(
                    "leg1", c.application_name or "?", _who(addr_map, c.addr), f"{c.addr}:{c.port}", c.tls, c.tls_info
                )
                for c in pb_f.clients
                if not is_own(c.application_name)
            ),
            len(own),
        )
    }
    if pb_f.servers is None:
        out["leg2"] = _missing(pb_f, "PgBouncer's SHOW SERVERS", no_creds)
        return out
    mine = [s for s in pb_f.servers if s.link and s.link in own_ptrs]
    out["leg2"] = LegView(
        tuple(
            Connection("leg2", s.application_name or "?", None, f"{s.addr}:{s.port}", s.tls, s.tls_info)
            for s in pb_f.servers
            if s not in mine
        ),
        len(mine),
    )
    return out


def _postgres_leg(
    pg_f: PostgresFacts | None, pb_f: PgBouncerFacts | None, addr_map: Mapping[str, Host], db: Host, no_creds: bool
) -> LegView | Unknown:
    """Direct Postgres clients: pg_stat_ssl's backends that are not PgBouncer's server connections."""
    if pg_f is None or pg_f.backends is None:
        return _missing(pg_f, "Postgres's pg_stat_ssl", no_creds)
    bouncer_pids = {sv.remote_pid for sv in (pb_f.servers or ()) if sv.remote_pid} if pb_f else set()
    direct = [
        b
        for b in pg_f.backends
        if b.pid not in bouncer_pids and not (pb_f is None and b.client_addr in (db.address, "127.0.0.1"))
    ]
    hidden = [b for b in direct if b.ssl is None and not is_own(b.application_name)]
    if hidden:
        return Unknown(
            Why.REFUSED,
            f"the probe user cannot see whether {len(hidden)} session(s) "
            "use TLS (it lacks pg_read_all_stats: grant it pg_monitor)",
        )
    return LegView(
        tuple(
            Connection(
                "postgres",
                b.application_name or "?",
                _who(addr_map, b.client_addr or ""),
                b.client_addr or "local",
                bool(b.ssl),
                b.version or "",
            )
            for b in direct
            if not is_own(b.application_name)
        ),
        # the session that read pg_stat_ssl (its query leaves itself out: pg_backend_pid()) plus any other
        # of ours, counted whether or not PgBouncer's side was read (a session of ours from the database
        # host is not dropped with the ones that cannot be told apart from PgBouncer's)
        1 + sum(1 for b in pg_f.backends if b.pid not in bouncer_pids and is_own(b.application_name)),
    )


def _redis_leg(
    rd_f: RedisFacts | None, addr_map: Mapping[str, Host], no_creds: bool
) -> tuple[LegView | Unknown, str | Unknown]:
    """Redis clients from CLIENT LIST, and the OTel collector's listener ("" when none is seen)."""
    if rd_f is None or rd_f.clients is None:
        gone = _missing(rd_f, "Redis's CLIENT LIST", no_creds)
        return gone, gone
    conns = []
    own_n = 0
    otel = ""
    for rc in rd_f.clients:
        if is_own(rc.name):
            own_n += 1
            continue
        if rc.tls and not rc.name and rc.cmd in ("", "NULL"):
            # a TLS connection that has said nothing yet: a handshake probe (this cockpit's or a
            # watcher's) before it names itself, or a client mid-connect. It is evidence of nothing:
            # not of a client that moved (no instance), not against a gate (it is TLS).
            continue
        host_ip = rc.addr.rsplit(":", 1)[0]
        service = rc.name or "?"
        conns.append(Connection("redis", service, _who(addr_map, host_ip), rc.addr, rc.tls, f"laddr {rc.laddr}"))
        if service.startswith("otel"):
            otel = rc.laddr
    return LegView(tuple(conns), own_n), otel
