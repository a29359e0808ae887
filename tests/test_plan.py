"""The plan loader: the shipped runbook loads as the runbook says, and every malformed plan is refused
with one specific `PlanError` naming the file, the line, the step and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import get_args

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from plans.plan import KINDS, SCOPES, Change, PlanError, Scope, StepKind, default_plan, load_plan, parse_plan

ROOT = Path(__file__).resolve().parent.parent
RUNBOOK_PATH = ROOT / "plans" / "runbook.toml"
RUNBOOK = RUNBOOK_PATH.read_text(encoding="utf-8")


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    """1-based line of the `occurrence`-th line containing `needle`."""
    hits = [n for n, line in enumerate(text.splitlines(), start=1) if needle in line]
    assert len(hits) >= occurrence, f"{needle!r} not found {occurrence}x"
    return hits[occurrence - 1]


def mutate(old: str, new: str, text: str = RUNBOOK) -> str:
    assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
    return text.replace(old, new)


def refuse(text: str) -> PlanError:
    with pytest.raises(PlanError) as exc:
        parse_plan(text, "runbook.toml")
    return exc.value


# -- the shipped runbook ------------------------------------------------------------------------


def test_runbook_steps_in_order() -> None:
    plan = default_plan()
    assert plan.version == 1
    assert plan.name == "internal-encryption"
    assert plan.step_ids == (
        "pg-1",
        "pg-2",
        "pg-3",
        "pg-4",
        "pg-5",
        "pg-6",
        "pg-7",
        "redis-1",
        "redis-2",
        "redis-3",
    )
    assert [t.id for t in plan.tracks] == ["postgres", "redis"]
    assert plan.track("postgres").steps == ("pg-1", "pg-2", "pg-3", "pg-4", "pg-5", "pg-6", "pg-7")
    assert plan.track("redis").steps == ("redis-1", "redis-2", "redis-3")
    assert plan.database_service == "database"


def test_runbook_changes_and_rollbacks() -> None:
    plan = default_plan()
    expect = {
        "pg-2": (Change("POSTGRES_TLS_ENABLED", "on", None),),
        "pg-3": (Change("PGBOUNCER_SERVER_TLS_SSLMODE", "verify-ca", None),),
        "pg-4": (Change("PGBOUNCER_CLIENT_TLS_SSLMODE", "allow", None),),
        "pg-5": (
            Change("DATABASE_SSL_MODE", "verify-full", None),
            Change("DATABASE_SSL_CA_FILE", "/etc/ssl/internal/ca.crt", None),
        ),
        "pg-6": (Change("PGBOUNCER_CLIENT_TLS_SSLMODE", "require", "allow"),),
        "pg-7": (Change("POSTGRES_FORCE_SSL", "on", None),),
        "redis-1": (Change("REDIS_TLS_ENABLED", "true", None),),
        "redis-2": (
            Change("REDIS_TLS_ENABLED", "true", None),
            Change("REDIS_TLS_CA_FILE", "/etc/ssl/internal/ca.crt", None),
        ),
        "redis-3": (Change("REDIS_FORCE_TLS", "true", None),),
    }
    for sid, changes in expect.items():
        assert plan.step(sid).changes == changes, sid
    pg1 = plan.step("pg-1")
    assert (pg1.kind, pg1.scope, pg1.changes, pg1.command, pg1.live) == (
        "certs",
        "fleet",
        (),
        "cockpit certs push",
        "",
    )
    assert plan.step("pg-6").changes[0].describe_rollback() == "PGBOUNCER_CLIENT_TLS_SSLMODE=allow"
    assert plan.step("pg-2").changes[0].describe_rollback() == "unset POSTGRES_TLS_ENABLED"


def test_runbook_scopes_gates_and_order() -> None:
    plan = default_plan()
    scopes = {s.id: s.scope for s in plan.steps}
    assert scopes == {
        "pg-1": "fleet",
        "pg-2": "database",
        "pg-3": "database",
        "pg-4": "database",
        "pg-5": "service",
        "pg-6": "database",
        "pg-7": "database",
        "redis-1": "database",
        "redis-2": "service",
        "redis-3": "database",
    }
    gates = {s.id: s.gates for s in plan.steps}
    assert gates == {
        "pg-1": (),
        "pg-2": ("certs_valid",),
        "pg-3": ("postgres_tls_verifies",),
        "pg-4": ("leg2_tls_and_e2e",),
        "pg-5": ("pgbouncer_offers_tls_and_ca_files",),
        "pg-6": ("no_plaintext_leg1",),
        "pg-7": ("no_plaintext_postgres",),
        "redis-1": ("certs_valid",),
        "redis-2": ("redis_tls_verifies", "ca_files"),
        "redis-3": ("no_plaintext_redis",),
    }
    r2 = plan.step("redis-2")
    assert r2.gates_for_target("telpro") == ("redis_tls_verifies", "ca_files", "telpro_ssl_build")
    assert r2.gates_for_target("api") == ("redis_tls_verifies", "ca_files")
    assert plan.step("pg-5").order == ("api", "web", "voice", "ops", "others")
    assert r2.order == ("api", "web", "voice", "ops", "telpro")
    assert plan.step("pg-7").optional and not plan.step("pg-6").optional
    assert all(s.deadline > 0 for s in plan.steps)
    # a track runs in order; the Redis track does not wait for Postgres
    assert plan.step("pg-3").after == ("pg-2",)
    assert plan.step("redis-1").after == ()
    assert [s.id for s in plan.ancestors(plan.step("redis-3"))] == ["redis-1", "redis-2"]
    assert [s.id for s in plan.descendants(plan.step("pg-5"))] == ["pg-6", "pg-7"]


def test_load_plan_reads_the_same_file() -> None:
    assert load_plan(RUNBOOK_PATH) == default_plan()
    assert default_plan().step("pg-2").line == line_of(RUNBOOK, 'id = "pg-2"') - 1  # its [[steps]] header


def test_targets_expand_others() -> None:
    plan = default_plan()
    env = ["database", "api", "media", "voice", "web", "telpro", "ops"]
    assert plan.targets(plan.step("pg-5"), env) == ["api", "web", "voice", "ops", "media", "telpro"]
    assert plan.targets(plan.step("redis-2"), env) == ["api", "web", "voice", "ops", "telpro"]
    # services the environment lacks are skipped; "others" may be empty
    assert plan.targets(plan.step("pg-5"), ["api", "voice"]) == ["api", "voice"]
    assert plan.targets(plan.step("pg-2"), env) == ["database"]
    assert plan.targets(plan.step("pg-1"), env) == []
    # an already expanded list expands to itself
    once = plan.targets(plan.step("pg-5"), env)
    assert plan.targets(plan.step("pg-5"), once) == once


def test_later_values_supersede() -> None:
    plan = default_plan()
    assert plan.accepted_values(plan.step("pg-4"), "PGBOUNCER_CLIENT_TLS_SSLMODE") == {"allow", "require"}
    assert plan.accepted_values(plan.step("pg-6"), "PGBOUNCER_CLIENT_TLS_SSLMODE") == {"require"}
    # same variable, other scope: not superseding
    assert plan.accepted_values(plan.step("redis-1"), "REDIS_TLS_ENABLED") == {"true"}


# -- malformed plans: one specific error each ---------------------------------------------------------


PG2_CHANGE = 'var = "POSTGRES_TLS_ENABLED"\nvalue = "on"\nrollback.unset = true'


def test_error_format_names_file_line_step_and_fix() -> None:
    text = mutate('var = "POSTGRES_TLS_ENABLED"', 'var = "POSTGRES_TLS_ENABLE"')
    e = refuse(text)
    line = line_of(text, 'var = "POSTGRES_TLS_ENABLE"')
    assert (e.source, e.line, e.step) == ("runbook.toml", line, "pg-2")
    assert str(e).startswith(f"runbook.toml:{line}: step pg-2: changes[0].var: unknown variable POSTGRES_TLS_ENABLE")
    assert 'did you mean "POSTGRES_TLS_ENABLED"?' in str(e)
    assert "add it to [scopes.database] variables" in str(e)


def test_variable_of_another_scope_is_unknown() -> None:
    text = mutate('var = "POSTGRES_FORCE_SSL"', 'var = "DATABASE_SSL_MODE"')
    e = refuse(text)
    assert e.step == "pg-7"
    assert 'unknown variable DATABASE_SSL_MODE for scope "database"' in e.problem
    assert e.line == line_of(text, 'var = "DATABASE_SSL_MODE"', 2)  # the first is pg-5's


def test_duplicate_step_id() -> None:
    text = mutate('id = "pg-4"', 'id = "pg-3"')
    e = refuse(text)
    assert e.step == "pg-3"
    assert 'duplicate step id "pg-3" (also step #3)' in e.problem
    assert e.line == line_of(text, 'id = "pg-3"', 2)


def test_after_names_unknown_step() -> None:
    text = mutate('id = "redis-1"\n', 'id = "redis-1"\nafter = ["pg-9"]\n')
    e = refuse(text)
    assert e.step == "redis-1"
    assert 'after names unknown step "pg-9"' in e.problem
    assert e.line == line_of(text, 'after = ["pg-9"]')


def test_after_itself() -> None:
    e = refuse(mutate('id = "redis-1"\n', 'id = "redis-1"\nafter = ["redis-1"]\n'))
    assert e.step == "redis-1" and "cannot run after itself" in e.problem


def test_cycle() -> None:
    text = mutate('id = "pg-3"\n', 'id = "pg-3"\nafter = ["redis-2"]\n')
    text = mutate('id = "redis-1"\n', 'id = "redis-1"\nafter = ["pg-4"]\n', text)
    e = refuse(text)
    assert "the order forms a cycle: pg-3 → redis-2 → redis-1 → pg-4 → pg-3" in e.problem
    assert e.step == "pg-3"
    assert e.line == line_of(text, 'after = ["redis-2"]')


def test_cycle_within_a_track() -> None:
    e = refuse(mutate('id = "pg-3"\n', 'id = "pg-3"\nafter = ["pg-4"]\n'))
    assert "cycle: pg-3 → pg-4 → pg-3" in e.problem


def test_mutating_step_without_rollback() -> None:
    text = mutate(PG2_CHANGE, 'var = "POSTGRES_TLS_ENABLED"\nvalue = "on"')
    e = refuse(text)
    assert e.step == "pg-2"
    assert "the change of POSTGRES_TLS_ENABLED has no rollback; add rollback.unset = true" in e.problem
    assert e.line == line_of(text, 'var = "POSTGRES_TLS_ENABLED"') - 1  # its [[steps.changes]] header


def test_rollback_without_value() -> None:
    e = refuse(mutate(PG2_CHANGE, 'var = "POSTGRES_TLS_ENABLED"\nvalue = "on"\nrollback = {}'))
    assert "has no rollback value" in e.problem


def test_rollback_that_undoes_nothing() -> None:
    e = refuse(mutate(PG2_CHANGE, 'var = "POSTGRES_TLS_ENABLED"\nvalue = "on"\nrollback.value = "on"'))
    assert e.step == "pg-2" and "undoes nothing" in e.problem


def test_rollback_that_skips_the_previous_step() -> None:
    text = mutate('rollback.value = "allow"', "rollback.unset = true")
    e = refuse(text)
    assert e.step == "pg-6"
    assert e.problem == (
        "rollback of PGBOUNCER_CLIENT_TLS_SSLMODE is unset, which would skip back past pg-4 "
        '(PGBOUNCER_CLIENT_TLS_SSLMODE=allow); write rollback.value = "allow"'
    )


def test_unknown_gate() -> None:
    text = mutate('gates = ["postgres_tls_verifies"]', 'gates = ["postgres_tls_verified"]')
    e = refuse(text)
    assert e.step == "pg-3"
    assert 'unknown gate "postgres_tls_verified"; did you mean "postgres_tls_verifies"?' in e.problem
    assert e.line == line_of(text, 'gates = ["postgres_tls_verified"]')


def test_unknown_verification() -> None:
    e = refuse(mutate('verify = "redis_tls_verifies"', 'verify = "redis_ok"'))
    assert e.step == "redis-1" and 'unknown gate "redis_ok"' in e.problem


def test_per_service_gate_on_a_database_step() -> None:
    e = refuse(mutate('gates = ["no_plaintext_leg1"]', 'gates = ["telpro_ssl_build"]'))
    assert e.step == "pg-6" and 'can only be used by a step with scope "service"' in e.problem


def test_unknown_scope_in_a_step() -> None:
    text = mutate(
        'id = "pg-7"\ntrack = "postgres"\ntitle = "pg_hba.conf hostssl-only (belt and braces)"\nscope = "database"',
        'id = "pg-7"\ntrack = "postgres"\ntitle = "pg_hba.conf hostssl-only (belt and braces)"\nscope = "databse"',
    )
    e = refuse(text)
    assert e.step == "pg-7"
    assert 'unknown scope "databse"; did you mean "database"?' in e.problem
    assert e.line == line_of(text, 'scope = "databse"')


def test_unknown_scope_table() -> None:
    text = mutate("[scopes.service]", "[scopes.apps]")
    e = refuse(text)
    assert e.where == "scopes.apps" and e.step is None
    assert 'unknown scope "apps"' in e.problem
    assert e.line == line_of(text, "[scopes.apps]")


def test_unknown_service_in_order() -> None:
    text = mutate(
        'order = ["api", "web", "voice", "ops", "others"]', 'order = ["api", "web", "vioce", "ops", "others"]'
    )
    e = refuse(text)
    assert e.step == "pg-5"
    assert 'unknown service "vioce" in order; did you mean "voice"?' in e.problem
    assert e.line == line_of(text, '"vioce"')
    assert str(e).startswith(f"runbook.toml:{e.line}: step pg-5: order[2]: ")


def test_service_twice_in_order() -> None:
    e = refuse(mutate('order = ["api", "web", "voice", "ops", "telpro"]', 'order = ["api", "web", "api"]'))
    assert e.step == "redis-2" and '"api" appears twice in order' in e.problem


def test_unknown_service_in_gates_for() -> None:
    e = refuse(mutate("gates_for.telpro =", "gates_for.telpr ="))
    assert e.step == "redis-2" and 'unknown service "telpr" in gates_for; did you mean "telpro"?' in e.problem


def test_order_on_a_database_step() -> None:
    text = mutate('gates = ["leg2_tls_and_e2e"]', 'gates = ["leg2_tls_and_e2e"]\norder = ["api"]')
    e = refuse(text)
    assert e.step == "pg-4" and 'order applies to scope "service" only' in e.problem


def test_unknown_key_suggests() -> None:
    e = refuse(
        mutate(
            'deadline = 600\nauto_rollback = true\n[[steps.changes]]\nvar = "DATABASE_SSL_MODE"',
            'deadline = 600\nauto_rolback = true\n[[steps.changes]]\nvar = "DATABASE_SSL_MODE"',
        )
    )
    assert e.step == "pg-5" and 'unknown key "auto_rolback"; did you mean "auto_rollback"?' in e.problem


def test_unknown_track() -> None:
    e = refuse(mutate('id = "redis-3"\ntrack = "redis"', 'id = "redis-3"\ntrack = "rediss"'))
    assert e.step == "redis-3" and 'unknown track "rediss"; did you mean "redis"?' in e.problem


def test_live_fact_unknown_and_misfit() -> None:
    e = refuse(mutate('live = "postgres_ssl"', 'live = "postgres_tls"'))
    assert e.step == "pg-2" and 'unknown live fact "postgres_tls"' in e.problem
    e = refuse(mutate('live = "postgres_ssl"', 'live = "instance_db_tls"'))
    assert e.step == "pg-2" and 'does not fit scope "database"' in e.problem


def test_deadline() -> None:
    e = refuse(
        mutate(
            'verify = "postgres_hostssl_only"\nlive = "pg_hba_hostssl_only"\ndeadline = 300',
            'verify = "postgres_hostssl_only"\nlive = "pg_hba_hostssl_only"',
        )
    )
    assert e.step == "pg-7" and "deadline is required" in e.problem
    e = refuse(
        mutate(
            'verify = "postgres_hostssl_only"\nlive = "pg_hba_hostssl_only"\ndeadline = 300',
            'verify = "postgres_hostssl_only"\nlive = "pg_hba_hostssl_only"\ndeadline = -5',
        )
    )
    assert "deadline must be a positive number of seconds, got -5" in e.problem


def test_certs_step_sets_no_variable() -> None:
    e = refuse(
        mutate(
            'command = "cockpit certs push"',
            'command = "cockpit certs push"\n'
            '[[steps.changes]]\nvar = "POSTGRES_TLS_ENABLED"\nvalue = "on"\nrollback.unset = true',
        )
    )
    assert e.step == "pg-1" and 'a "certs" step sets no variable' in e.problem


def test_version() -> None:
    e = refuse(mutate("version = 1", "version = 2"))
    assert e.line == 7 and "unsupported plan version 2; this cockpit reads version 1 only" in e.problem
    e = refuse(mutate("version = 1\n", ""))
    assert "version is required" in e.problem


def test_toml_syntax_error_has_its_line() -> None:
    text = mutate(
        'deadline = 300\nauto_rollback = false\n[[steps.changes]]\nvar = "POSTGRES_TLS_ENABLED"',
        "deadline = 300\nauto_rollback = false\n[[steps.changes]]\nvar = POSTGRES_TLS_ENABLED",
    )
    e = refuse(text)
    assert e.line == line_of(text, "var = POSTGRES_TLS_ENABLED")
    assert "TOML syntax error" in e.problem


def test_missing_file() -> None:
    with pytest.raises(PlanError) as exc:
        load_plan(ROOT / "plans" / "no-such-plan.toml")
    assert "cannot read the plan file" in str(exc.value)


# -- loaders that refuse cleanly ------------------------------------------------------------------

PLAN_V2 = "unsupported plan version 2; this cockpit reads version 1 only — use a matching cockpit or rewrite the plan"


@pytest.mark.parametrize(
    "rest",
    [
        pytest.param("\nthis is [[ not toml = = \x01\n", id="garbage"),
        pytest.param("\na = " + "[" * 5000, id="deep"),
        pytest.param("\n" + "# padding\n" * 200_000, id="over-1-MiB"),
    ],
)
def test_an_unsupported_version_is_refused_first(rest: str) -> None:
    e = refuse(mutate("version = 1", "version = 2") + rest)
    assert str(e) == f"runbook.toml:7: version: {PLAN_V2}"


def test_size_and_nesting_limits() -> None:
    e = refuse(RUNBOOK + "#" * (1 << 20))
    assert str(e) == (
        "runbook.toml: the file is larger than 1 MiB, the most a plan may be; check that this is the right file"
    )
    text = mutate('id = "pg-3"\n', 'id = "pg-3"\nx = ' + "[" * 17 + "]" * 17 + "\n")
    e = refuse(text)
    assert (e.line, e.where) == (line_of(text, "x = [["), "steps[2].x")
    assert e.problem.startswith("TOML nested deeper than 16 levels")


@pytest.mark.parametrize("value", ["inf", "nan", "-inf", "1e999", "0", "-0.5"])
def test_deadline_is_finite_and_positive(value: str) -> None:
    text = mutate(
        'verify = "postgres_hostssl_only"\nlive = "pg_hba_hostssl_only"\ndeadline = 300',
        f'verify = "postgres_hostssl_only"\nlive = "pg_hba_hostssl_only"\ndeadline = {value}',
    )
    e = refuse(text)
    shown = {"1e999": "inf", "-0.5": "-0.5"}.get(value, value)
    assert e.step == "pg-7" and e.problem == f"deadline must be a positive number of seconds, got {shown}"
    assert e.line == line_of(text, f"deadline = {value}")


def test_service_names_follow_the_inventory_rule() -> None:
    e = refuse(mutate('"media", "squid"]', '"media", "squ id"]'))
    assert e.problem == (
        "bad service name \"squ id\"; use letters, digits, '_', '-' or '.' "
        "(it becomes part of SSM and Secrets Manager names)"
    )
    assert e.where == "services[6]"


def _chain(n: int, *, tracks: int = 1, cross: int = 0) -> str:
    """A valid plan of `n` database steps in `tracks` chains, each re-setting its track's variable,
    with an `after` on the step 3 earlier (another track) every `cross` steps."""
    out = [
        "version = 1",
        'name = "chain"',
        'services = ["api"]',
        "[scopes.database]",
        "variables = [" + ", ".join(f'"V{t}"' for t in range(tracks)) + "]",
        *(f'[[tracks]]\nid = "t{t}"' for t in range(tracks)),
    ]
    for i in range(n):
        t = i % tracks
        rollback = "rollback.unset = true" if i < tracks else f'rollback.value = "{i - tracks}"'
        after = f'\nafter = ["s{i - 3}"]' if cross and i % cross == cross - 1 and i >= 3 else ""
        out.append(
            f'[[steps]]\nid = "s{i}"\ntrack = "t{t}"\nscope = "database"\nverify = "postgres_tls_verifies"\n'
            f'live = "postgres_ssl"\ndeadline = 300{after}\n'
            f'[[steps.changes]]\nvar = "V{t}"\nvalue = "{i}"\n{rollback}'
        )
    return "\n".join(out) + "\n"


def test_a_long_chain_validates() -> None:
    # 1500 steps, one after the other: deeper than Python's recursion limit (1000)
    plan = parse_plan(_chain(1500), "chain.toml")
    assert len(plan.steps) == 1500 and plan.step("s1499").after == ("s1498",)
    assert [s.id for s in plan.ancestors(plan.step("s3"))] == ["s0", "s1", "s2"]
    assert len(plan.descendants(plan.step("s0"))) == 1499
    assert plan.accepted_values(plan.step("s1497"), "V0") == {"1497", "1498", "1499"}
    # a rollback that skips back past its predecessor is still found at the end of the chain
    text = _chain(1500).replace('value = "1499"\nrollback.value = "1498"', 'value = "1499"\nrollback.unset = true')
    e = refuse(text)
    assert (e.step, e.line) == ("s1499", line_of(text, 'value = "1499"') + 1)
    assert e.problem.startswith("rollback of V0 is unset, which would skip back past s1498 (V0=1498)")
    # several tracks tied together by cross-track `after`s
    plan = parse_plan(_chain(400, tracks=4, cross=7), "chain.toml")
    assert plan.step("s6").after == ("s2", "s3") and len(plan.ancestors(plan.step("s399"))) > 100


@settings(max_examples=40, deadline=None, database=None)
@given(st.data())
def test_ancestors_match_a_plain_walk(data: st.DataObject) -> None:
    """Plan.ancestors / descendants / the rollback check agree with a plain graph walk on random plans."""
    n = data.draw(st.integers(1, 25))
    tracks = data.draw(st.integers(1, 4))
    lines = ["version = 1", 'name = "g"', 'services = ["api"]', "[scopes.database]", 'variables = ["V"]']
    lines += [f'[[tracks]]\nid = "t{t}"' for t in range(tracks)]
    befores: dict[int, list[int]] = {}
    for i in range(n):
        extra = sorted(set(data.draw(st.lists(st.integers(0, i - 1), max_size=2)))) if i else []
        befores[i] = extra
        after = ", ".join(f'"s{j}"' for j in extra)
        lines.append(
            f'[[steps]]\nid = "s{i}"\ntrack = "t{i % tracks}"\nscope = "database"\n'
            f'verify = "postgres_tls_verifies"\nlive = "postgres_ssl"\ndeadline = 1\nafter = [{after}]\n'
            f'[[steps.changes]]\nvar = "V"\nvalue = "{i}"\nrollback.value = "ROLLBACK-{i}"'
        )
    text = "\n".join(lines) + "\n"
    direct = {i: set(befores[i]) | ({i - tracks} if i >= tracks else set()) for i in range(n)}

    def walk(i: int) -> set[int]:
        seen: set[int] = set()
        todo = list(direct[i])
        while todo:
            j = todo.pop()
            if j not in seen:
                seen.add(j)
                todo.extend(direct[j])
        return seen

    # every rollback value is wrong on purpose wherever an earlier step sets V: the first such step
    # (in file order) is refused, naming the last ancestor in run order
    refused = [i for i in range(n) if walk(i)]
    if not refused:
        plan = parse_plan(text, "g.toml")
        assert all(plan.ancestors(s) == () for s in plan.steps)
        return
    e = refuse(text)
    assert e.step == f"s{refused[0]}"
    fixed = text
    run_order = [int(s.id[1:]) for s in parse_plan(_no_rollback_check(text, n), "g").steps]
    for i in range(n):
        anc = walk(i)
        if anc:
            prev = max(anc, key=run_order.index)
            fixed = fixed.replace(f'rollback.value = "ROLLBACK-{i}"', f'rollback.value = "{prev}"')
        else:
            fixed = fixed.replace(f'rollback.value = "ROLLBACK-{i}"', "rollback.unset = true")
    plan = parse_plan(fixed, "g.toml")
    for i in range(n):
        step = plan.step(f"s{i}")
        assert {int(s.id[1:]) for s in plan.ancestors(step)} == walk(i)
        assert {int(s.id[1:]) for s in plan.descendants(step)} == {j for j in range(n) if i in walk(j)}


def _no_rollback_check(text: str, n: int) -> str:
    """`text` with every step setting its own variable, so only the graph is validated."""
    out = text.replace('variables = ["V"]', "variables = [" + ", ".join(f'"V{i}"' for i in range(n)) + "]")
    for i in range(n):
        out = out.replace(f'var = "V"\nvalue = "{i}"\n', f'var = "V{i}"\nvalue = "{i}"\n', 1)
    return out


# -- typed kinds and scopes; ca_file_variables --------------------------------------------------------


def test_kinds_and_scopes_are_typed() -> None:
    assert get_args(StepKind) == KINDS == ("config", "certs")
    assert get_args(Scope) == SCOPES == ("fleet", "database", "service")
    plan = default_plan()
    assert {s.kind for s in plan.steps} == {"config", "certs"}


def test_ca_file_variables() -> None:
    assert default_plan().ca_file_variables == ("DATABASE_SSL_CA_FILE", "REDIS_TLS_CA_FILE")
    text = mutate('title = "Internal', 'ca_file_variables = ["REDIS_TLS_CA_FILE"]\ntitle = "Internal')
    assert parse_plan(text, "runbook.toml").ca_file_variables == ("REDIS_TLS_CA_FILE",)
    none = mutate('title = "Internal', 'ca_file_variables = []\ntitle = "Internal')
    assert parse_plan(none, "runbook.toml").ca_file_variables == ()
    # the default keeps only the variables [scopes.service] declares
    text = mutate(
        'variables = ["DATABASE_SSL_MODE", "DATABASE_SSL_CA_FILE", "REDIS_TLS_ENABLED", "REDIS_TLS_CA_FILE"]',
        'variables = ["DATABASE_SSL_MODE", "REDIS_TLS_ENABLED", "REDIS_TLS_CA_FILE"]',
    )
    start = text.index('[[steps.changes]]                      # "Each app')  # pg-5's CA change goes too
    end = text.index("rollback.unset = true", start) + len("rollback.unset = true")
    text = text[:start] + text[end:]
    assert parse_plan(text, "runbook.toml").ca_file_variables == ("REDIS_TLS_CA_FILE",)


@pytest.mark.parametrize(
    ("value", "where", "problem"),
    [
        (
            '["DATABASE_SSL_CA_FIL"]',
            "ca_file_variables[0]",
            '"DATABASE_SSL_CA_FIL" is not a variable of scope "service"; did you mean "DATABASE_SSL_CA_FILE"? '
            "(known: DATABASE_SSL_CA_FILE, DATABASE_SSL_MODE, REDIS_TLS_CA_FILE, REDIS_TLS_ENABLED); add it to "
            "[scopes.service] variables, or remove it",
        ),
        (
            '["REDIS_TLS_CA_FILE", "POSTGRES_TLS_ENABLED"]',
            "ca_file_variables[1]",
            '"POSTGRES_TLS_ENABLED" is not a variable of scope "service"; did you mean "REDIS_TLS_ENABLED"? '
            "(known: DATABASE_SSL_CA_FILE, DATABASE_SSL_MODE, REDIS_TLS_CA_FILE, REDIS_TLS_ENABLED); add it to "
            "[scopes.service] variables, or remove it",
        ),
        (
            '["REDIS_TLS_CA_FILE", "REDIS_TLS_CA_FILE"]',
            "ca_file_variables[1]",
            "REDIS_TLS_CA_FILE is listed twice; keep one",
        ),
        (
            '"REDIS_TLS_CA_FILE"',
            "ca_file_variables",
            'ca_file_variables must be an array of strings, got "REDIS_TLS_CA_FILE"',
        ),
        ("[1]", "ca_file_variables[0]", "ca_file_variables[0] must be a string, got 1"),
    ],
)
def test_ca_file_variables_refused(value: str, where: str, problem: str) -> None:
    text = mutate('title = "Internal', f'ca_file_variables = {value}\ntitle = "Internal')
    e = refuse(text)
    assert (e.where, e.problem, e.step) == (where, problem, None)
    assert e.line == line_of(text, "ca_file_variables =")


NEW_VARIABLE_PLAN = Path(__file__).resolve().parent / "plans" / "new_variable.toml"


def test_a_plan_with_a_variable_without_a_hazard_rule_loads_with_a_warning() -> None:
    plan = load_plan(NEW_VARIABLE_PLAN)
    assert plan.variables["database"] == frozenset({"POSTGRES_TLS_ENABLED", "PGBOUNCER_TLS_CIPHERS"})
    assert len(plan.warnings) == 1
    assert "PGBOUNCER_TLS_CIPHERS" in plan.warnings[0] and "no rollback-safety rule" in plan.warnings[0]
    assert default_plan().warnings == ()  # every variable of the runbook has its rule
