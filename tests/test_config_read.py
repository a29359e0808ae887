"""What the configured side reports when a source cannot be read: unknown values with the reason, and one
check per service and reason — never "unset", never the manifest default, never silence."""

from __future__ import annotations

import asyncio
from typing import Any

from probes.collect.round import _unread_config
from probes.config import read_service_config, rollout_vars
from probes.model import Unknown, Verdict, Why
from probes.snapshot import ConfigSource, ConfiguredValue


class _NoAws:
    """An AWS stand-in that must not be called (the manifest failure is decided first)."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"AWS was called ({name}) although vars.yaml could not be read")


def test_an_unreadable_manifest_makes_every_value_unknown_with_its_reason() -> None:
    bad = Unknown(Why.NOT_CHECKED, "h1:/opt/services/api/vars.yaml: not valid YAML (line 3)")
    values = asyncio.run(
        read_service_config(
            _NoAws(),
            None,
            "api",
            "app",
            manifest=bad,  # type: ignore[arg-type]
            variables=("DATABASE_SSL_MODE", "REDIS_TLS_ENABLED"),
        )
    )
    assert set(values) == {"DATABASE_SSL_MODE", "REDIS_TLS_ENABLED"}
    for v in values.values():
        assert isinstance(v, Unknown) and "vars.yaml" in v.detail and "not valid YAML" in v.detail
    checks = _unread_config(
        {"api": values, "web": {"DATABASE_SSL_MODE": ConfiguredValue("disable", ConfigSource.DEFAULT)}}
    )
    assert len(checks) == 1 and checks[0].verdict is Verdict.ERROR and checks[0].target == "api"
    assert checks[0].check == "config.read" and "not valid YAML" in checks[0].summary


def test_an_unreadable_env_file_is_not_an_empty_one() -> None:
    gone = Unknown(Why.TIMEOUT, "h1:/opt/deployment/rollout.env: timed out")
    values = asyncio.run(
        read_service_config(
            _NoAws(),
            None,
            "api",
            "app",
            manifest={},
            bootstrap={},  # type: ignore[arg-type]
            envfile=gone,
            variables=("DATABASE_SSL_MODE",),
        )
    )
    v = values["DATABASE_SSL_MODE"]
    assert isinstance(v, Unknown) and v.why is Why.TIMEOUT and "the env file" in v.detail


def test_the_collector_reads_what_the_plan_declares_and_nothing_of_its_own() -> None:
    """The probes hold no runbook variables: without a plan's declared variables only the platform variables
    the cockpit itself reads are resolved; with them, exactly those plus the platform's."""
    assert rollout_vars("database") == ("TLS_KEY_OWNER", "REDIS_TLS_PORT")
    assert rollout_vars("app") == ("REDIS_TLS_PORT",)
    declared = {"database": ("POSTGRES_TLS_ENABLED", "NEW_DB_VAR"), "app": ("DATABASE_SSL_MODE", "REDIS_TLS_PORT")}
    assert rollout_vars("database", declared) == (
        "POSTGRES_TLS_ENABLED",
        "NEW_DB_VAR",
        "TLS_KEY_OWNER",
        "REDIS_TLS_PORT",
    )
    assert rollout_vars("api", declared) == ("DATABASE_SSL_MODE", "REDIS_TLS_PORT")
