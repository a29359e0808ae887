"""The Postgres leg as pg_stat_ssl shows it: who is a client, who is the cockpit (no servers needed)."""

from __future__ import annotations

from inventory.model import Host
from probes.collect.legs import _postgres_leg
from probes.postgres import Backend, PostgresFacts
from probes.snapshot import LegView

DB = Host(name="db", address="127.0.0.9", service="database", port=22, user="root")
API = Host(name="api-01", address="127.0.0.10", service="api", port=22, user="root")


def facts(*backends: Backend) -> PostgresFacts:
    return PostgresFacts(
        target="db:5432",
        connected=True,
        server_version="16",
        own_connection_tls=True,
        own_tls_version="TLSv1.3",
        ssl=True,
        hba_rules=None,
        hostssl_only=None,
        backends=backends,
        results=(),
    )


def test_the_session_that_read_pg_stat_ssl_is_counted_as_own_not_as_a_client() -> None:
    # the backends query leaves out its own session (pg_backend_pid()): it still exists and is the cockpit's
    view = _postgres_leg(facts(), None, {}, DB, False)
    assert view == LegView((), 1)


def test_another_cockpits_session_is_own_and_an_apps_is_a_client() -> None:
    other = Backend(11, "rollout-cockpit-probe-ab12", "127.0.0.1", "probe", True, "TLSv1.3")
    app = Backend(12, "api", API.address, "app", False, None)
    view = _postgres_leg(facts(other, app), None, {API.address: API}, DB, False)
    assert isinstance(view, LegView)
    assert view.own == 2
    assert [(c.service, c.tls) for c in view.connections] == [("api", False)]
