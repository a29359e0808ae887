"""The inventory loader: the documented example loads, and every malformed input is refused with
`file:line: key.path: what to do`."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from inventory.load import load_inventory, parse_inventory
from inventory.model import Environment, InventoryError
from inventory.tomllines import format_key_path, iter_key_lines

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "inventory.example.toml"


def test_example_loads() -> None:
    inv = load_inventory(EXAMPLE)
    assert inv.version == 1
    assert inv.default_env == "staging"
    assert inv.env_names == ("staging",)
    env = inv.env()
    assert env is inv.env("staging")
    assert env.namespace == "voiceai/staging"
    assert env.region == "eu-west-1"
    assert (env.profile, env.endpoint_url, env.after) == ("", "", "")
    assert env.protected is False and env.managed_database is False

    assert env.ssh.known_hosts == Path("~/.ssh/known_hosts").expanduser()
    assert env.ssh.config == Path("~/.ssh/config").expanduser()
    assert env.ssh.identity_files == ()
    assert (env.ssh.connect_timeout, env.ssh.command_timeout) == (10.0, 60.0)
    assert (env.ssh.max_channels, env.ssh.max_connects_in_flight) == (6, 8)

    assert env.bastion is not None
    assert (env.bastion.address, env.bastion.port, env.bastion.user) == (
        "bastion.staging.example.com",
        22,
        "ops",
    )

    db = env.database
    assert (db.host, db.dns_name, db.access) == (
        "staging-database-01",
        "staging-database-01.voiceai.internal",
        "tunnel",
    )
    assert (db.postgres_port, db.pgbouncer_port, db.redis_port, db.redis_tls_port) == (5432, 6432, 6379, 6380)
    assert db.dbname == "voiceai"

    assert env.credentials.secret == "voiceai/staging/database/secrets"
    assert env.credentials.pgbouncer_admin_password_key == "PGBOUNCER_ADMIN_PASSWORD"
    assert env.credentials.redis_password_key == "REDIS_PASSWORD"
    assert (env.tls_secrets.layout, env.tls_secrets.secret_suffix) == ("json", "secrets")
    assert (env.config_store.kind, env.config_store.path) == ("ssm", "")
    assert dict(env.paths) == {"/etc/ssl/internal": "/etc/ssl/internal"}
    assert env.commands.update == "{root}/opt/services/{service}/update.sh --restart-only --yes"
    assert env.commands.telpro_ssl_check.endswith("grep -q hiredis_ssl")

    assert env.service_names == ("database", "api", "voice")
    assert env.service("database").role == "database"
    assert env.service("api").health_url == "http://{address}:8080/health"
    assert env.service("voice").vars == "/opt/services/voice/vars.yaml"  # the default, {service} filled
    assert env.service("voice").pre_restart == "/opt/services/voice/drain.sh --timeout 120"

    assert [h.name for h in env.hosts] == ["staging-database-01", "staging-api-01", "staging-voice-01"]
    dbh = env.database_host
    assert (dbh.address, dbh.port, dbh.user, dbh.jump, dbh.root) == ("10.0.1.20", 22, "ops", True, "/")
    api = env.hosts_for("api")
    assert [h.name for h in api] == ["staging-api-01"]
    assert (api[0].port, api[0].user, api[0].root) == (22, "", "/")

    assert env.ssm_path("api", "DATABASE_SSL_MODE") == "/voiceai/staging/api/DATABASE_SSL_MODE"
    assert env.secret_name("api") == "voiceai/staging/api/secrets"
    assert env.tls_secret_name("api", "INTERNAL_CA_CRT_B64") == "voiceai/staging/api/secrets"
    assert env.update_command(api[0]) == "/opt/services/api/update.sh --restart-only --yes"
    assert env.health_url(api[0]) == "http://10.0.2.11:8080/health"
    assert env.health_url(env.hosts_for("voice")[0]) == ""


# A small valid inventory whose line numbers the cases below rely on.
BASE = """\
version = 1
default_env = "staging"

[environments.staging]
namespace = "voiceai/staging"
region = "eu-west-1"
after = ""

[environments.staging.bastion]
address = "bastion.example.com"

[environments.staging.database]
host = "staging-database-01"
dns_name = "staging-database-01.voiceai.internal"
access = "tunnel"
postgres_port = 5432

[environments.staging.config_store]
kind = "ssm"

[environments.staging.services.database]
role = "database"

[[environments.staging.hosts]]
name = "staging-database-01"
address = "10.0.1.20"
service = "database"
jump = true

[[environments.staging.hosts]]
name = "staging-api-01"
address = "10.0.2.11"
service = "api"
jump = true

[environments.production]
namespace = "voiceai/production"
after = "staging"

[environments.production.database]
host = "production-database-01"
dns_name = "production-database-01.voiceai.internal"

[[environments.production.hosts]]
name = "production-database-01"
address = "10.1.1.20"
service = "database"
"""


def test_worked_example_in_docs_loads() -> None:
    doc = (ROOT / "docs" / "inventory.md").read_text()
    block = doc.split("```toml\n", 1)[1].split("```", 1)[0]
    inv = parse_inventory(block, "inventory.md")
    prod = inv.env("production")
    assert (prod.after, prod.protected, prod.config_store.kind) == ("staging", True, "envfile")
    assert prod.config_store.path == "/opt/deployment/rollout.env"
    assert inv.env().database_host.name == "staging-database-01"


def test_base_is_valid() -> None:
    inv = parse_inventory(BASE, "inventory.toml")
    assert inv.env_names == ("staging", "production")
    prod = inv.env("production")
    assert prod.after == "staging" and prod.bastion is None
    # no services table for production's "database": the role defaults to "database" for that name
    assert prod.service("database").role == "database"
    assert prod.database_host.name == "production-database-01"
    # the staging api service has no table: settings default
    api = inv.env("staging").service("api")
    assert (api.role, api.vars, api.health_url, api.pre_restart) == (
        "app",
        "/opt/services/api/vars.yaml",
        "",
        "",
    )
    assert inv.env("staging").database.dbname == "postgres"


def _edit(old: str, new: str) -> str:
    assert BASE.count(old) == 1, old
    return BASE.replace(old, new)


MALFORMED = [
    pytest.param(
        _edit("postgres_port = 5432", "postgres_port = 54 32"),
        "inventory.toml:16: environments.staging.database.postgres_port: TOML syntax error: "
        "Expected newline or end of document after a statement (column 20); fix the TOML syntax there",
        id="syntax-error",
    ),
    pytest.param(
        _edit("postgres_port = 5432", 'postgres_port = "abc"'),
        'inventory.toml:16: environments.staging.database.postgres_port: expected an integer 1-65535, got "abc"',
        id="wrong-type",
    ),
    pytest.param(
        _edit("postgres_port = 5432", "postgres_port = 70000"),
        "inventory.toml:16: environments.staging.database.postgres_port: expected an integer 1-65535, got 70000",
        id="port-out-of-range",
    ),
    pytest.param(
        _edit(
            'address = "10.0.2.11"\nservice = "api"\njump = true',
            'address = "10.0.2.11"\nservice = "api"\njump = "yes"',
        ),
        'inventory.toml:34: environments.staging.hosts[1].jump: expected true or false, got "yes"',
        id="wrong-type-bool",
    ),
    pytest.param(
        _edit("postgres_port = 5432", "postgres_prot = 5432"),
        'inventory.toml:16: environments.staging.database.postgres_prot: unknown key "postgres_prot"; '
        'did you mean "postgres_port"?',
        id="unknown-key-suggestion",
    ),
    pytest.param(
        _edit('default_env = "staging"', 'defualt_env = "staging"'),
        'inventory.toml:2: defualt_env: unknown key "defualt_env"; did you mean "default_env"?',
        id="unknown-top-level-key",
    ),
    pytest.param(
        _edit('access = "tunnel"', 'access = "tunel"'),
        'inventory.toml:15: environments.staging.database.access: expected "tunnel" or "direct", '
        'got "tunel"; did you mean "tunnel"?',
        id="bad-enum-access",
    ),
    pytest.param(
        _edit('role = "database"', 'role = "db"'),
        'inventory.toml:22: environments.staging.services.database.role: expected "app" or "database", got "db"',
        id="bad-enum-role",
    ),
    pytest.param(
        _edit('name = "staging-api-01"', 'name = "staging-database-01"'),
        'inventory.toml:31: environments.staging.hosts[1].name: duplicate host name "staging-database-01" '
        "(already used by hosts[0], line 25); host names must be unique",
        id="duplicate-host-name",
    ),
    pytest.param(
        _edit('address = "10.0.2.11"', 'address = "10.0.1.20"'),
        "inventory.toml:32: environments.staging.hosts[1].address: duplicate address 10.0.1.20:22 "
        '(already used by hosts[0] "staging-database-01", line 26); '
        "each host entry must be a different machine",
        id="duplicate-host-address",
    ),
    pytest.param(
        _edit('host = "staging-database-01"', 'host = "staging-db-01"'),
        'inventory.toml:13: environments.staging.database.host: names no host ("staging-db-01"); '
        'did you mean "staging-database-01"? add a [[environments.staging.hosts]] entry with that name, '
        "or use one of: "
        '"staging-database-01", "staging-api-01"',
        id="db-host-missing",
    ),
    pytest.param(
        _edit('host = "staging-database-01"', 'host = "staging-api-01"'),
        'inventory.toml:13: environments.staging.database.host: names host "staging-api-01", whose service '
        '"api" has role "app"; point it at the host running Postgres, PgBouncer and Redis, or give that '
        'service role = "database"',
        id="db-host-not-database-role",
    ),
    pytest.param(
        _edit('service = "api"', 'service = "database"'),
        'inventory.toml:33: environments.staging.hosts[1].service: a second database host ("staging-api-01"; '
        'the first is "staging-database-01"); an environment has exactly one host whose service has '
        'role = "database" — put the others in their own environment',
        id="two-database-hosts",
    ),
    pytest.param(
        _edit('address = "10.1.1.20"', 'address = "10.1.1.20"\njump = true'),
        "inventory.toml:47: environments.production.hosts[0].jump: jump = true but there is no bastion; "
        "add a [environments.production.bastion] table or set jump = false",
        id="jump-without-bastion",
    ),
    pytest.param(
        _edit('after = ""', 'after = "production"'),
        "inventory.toml:7: environments.staging.after: environments wait for each other in a cycle "
        '(staging → production → staging); the first environment of a rollout must have after = ""',
        id="after-cycle",
    ),
    pytest.param(
        _edit('after = "staging"', 'after = "production"'),
        "inventory.toml:38: environments.production.after: environments wait for each other in a cycle "
        '(production → production); the first environment of a rollout must have after = ""',
        id="after-self",
    ),
    pytest.param(
        _edit('after = ""', 'after = "prod"'),
        'inventory.toml:7: environments.staging.after: names no environment ("prod"); known environments: '
        '"staging", "production" ("" = none)',
        id="after-unknown",
    ),
    pytest.param(
        _edit("version = 1", "version = 2"),
        "inventory.toml:1: version: unsupported inventory version 2; this cockpit reads version 1 only — "
        "upgrade the cockpit, or write the file in a supported version (see docs/inventory.md)",
        id="unsupported-version",
    ),
    pytest.param(
        _edit("version = 1\n", "\n"),
        "inventory.toml:1: version: required key is missing; add `version = 1` at the top of the file",
        id="missing-version",
    ),
    pytest.param(
        _edit('kind = "ssm"', 'kind = "envfile"'),
        # the key is missing, so the line is its table's header
        'inventory.toml:18: environments.staging.config_store.path: kind = "envfile" needs path = '
        '"/absolute/path/on/the/host" (the KEY=VALUE file on every host of the service, '
        'e.g. "/opt/deployment/rollout.env")',
        id="envfile-without-path",
    ),
    pytest.param(
        _edit('kind = "ssm"', 'kind = "envfile"\npath = "rollout.env"'),
        "inventory.toml:20: environments.staging.config_store.path: "
        "expected an absolute path of the env file "
        'on the host starting with /, got "rollout.env"',
        id="envfile-relative-path",
    ),
    pytest.param(
        _edit('namespace = "voiceai/staging"\n', "\n"),
        "inventory.toml:4: environments.staging.namespace: required key is missing; add `namespace = ...` "
        "to environments.staging",
        id="missing-required-key",
    ),
    pytest.param(
        _edit('default_env = "staging"', 'default_env = "stagin"'),
        'inventory.toml:2: default_env: names no environment ("stagin"); did you mean "staging"? '
        'known environments: "staging", "production"',
        id="default-env-unknown",
    ),
    pytest.param(
        _edit('kind = "ssm"', 'kind = "ssm"\n\n[environments.staging.commands]\nupdate = "{roo}/update.sh"'),
        "inventory.toml:22: environments.staging.commands.update: unknown placeholder {roo} (did you mean "
        "{root}?); placeholders are {root} {service} {host} {address}, write {{ and }} for literal braces",
        id="bad-placeholder",
    ),
    pytest.param(
        _edit('service = "api"', 'service = "others"'),
        'inventory.toml:33: environments.staging.hosts[1].service: "others" is reserved (it means "every '
        'remaining service"); rename the service',
        id="reserved-service-name",
    ),
]


@pytest.mark.parametrize(("text", "message"), MALFORMED)
def test_malformed(text: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inventory.toml")
    assert str(info.value) == message
    assert info.value.source == "inventory.toml"


def test_error_attributes() -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_edit("postgres_port = 5432", 'postgres_port = "abc"'), "inventory.toml")
    err = info.value
    assert (err.line, err.key) == (16, "environments.staging.database.postgres_port")
    assert err.problem == 'expected an integer 1-65535, got "abc"'


def test_locator_inline_tables_arrays_and_dotted_keys() -> None:
    text = """\
version = 1
[environments.staging]
namespace = "voiceai/staging"
database = { host = "db", dns_name = "db.internal", postgres_port = 5432 }
ssh.connect_timeout = 5
pre = '''
[not.a.table]
'''
hosts = [
  { name = "db", address = "10.0.0.1", service = "database" },
  { name = "db", address = "10.0.0.2", service = "api" },
]
"""
    lines = dict(iter_key_lines(text))
    assert lines["environments.staging.database.postgres_port"] == 4
    assert lines["environments.staging.ssh.connect_timeout"] == 5
    assert lines["environments.staging.hosts[1].name"] == 11
    assert "not.a.table" not in lines
    valid = text.replace("pre = '''\n[not.a.table]\n'''\n", "\n\n\n")
    with pytest.raises(InventoryError) as info:
        parse_inventory(valid, "inline.toml")
    assert str(info.value).startswith('inline.toml:11: environments.staging.hosts[1].name: duplicate host name "db"')
    dotted = valid.replace("ssh.connect_timeout = 5", "ssh.connect_timeout = 0")
    with pytest.raises(InventoryError, match=r"^inline\.toml:5: environments\.staging\.ssh\.connect_timeout: "):
        parse_inventory(dotted, "inline.toml")


def test_locator_quoted_keys_and_nested_arrays() -> None:
    text = """\
[a."b.c"]
x = 1
[[a.list]]
y = 1
[[a.list]]
y = 2
[a.list.sub]
z = 3
"""
    lines = dict(iter_key_lines(text))
    assert lines['a."b.c".x'] == 2
    assert lines["a.list[1].y"] == 6
    assert lines["a.list[1].sub.z"] == 8
    assert format_key_path(("environments", "s", "paths", "/etc/ssl")) == 'environments.s.paths."/etc/ssl"'


def test_load_inventory_resolves_local_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    text = _edit(
        'region = "eu-west-1"',
        'region = "eu-west-1"\nssh = { known_hosts = "~/kh", identity_files = ["keys/id", "/abs/id"], config = "" }',
    )
    f = tmp_path / "inventory.toml"
    f.write_text(text)
    env = load_inventory(f).env()
    assert env.ssh.known_hosts == tmp_path / "home" / "kh"
    assert env.ssh.identity_files == (tmp_path / "keys" / "id", Path("/abs/id"))
    assert env.ssh.config is None

    f.write_text(text.replace("postgres_port = 5432", 'postgres_port = "abc"'))
    with pytest.raises(InventoryError) as info:
        load_inventory(f)
    assert str(info.value).startswith(f"{f}:17: environments.staging.database.postgres_port: ")
    with pytest.raises(InventoryError, match="cannot read the inventory"):
        load_inventory(tmp_path / "missing.toml")


def test_env_lookup() -> None:
    inv = parse_inventory(BASE, "inventory.toml")
    assert inv.env(None).name == "staging"
    with pytest.raises(InventoryError) as info:
        inv.env("prod")
    assert str(info.value) == (
        'inventory.toml: environments: no environment named "prod"; known environments: "staging", "production"'
    )
    without_default = parse_inventory(_edit('default_env = "staging"\n', "\n"), "inventory.toml")
    with pytest.raises(InventoryError, match="no default environment is set"):
        without_default.env()


FLEET = """\
version = 1
[environments.lab]
namespace = "voiceai/lab"
database = { host = "lab-database-01", dns_name = "db.lab" }
paths = { "/etc/ssl/internal" = "/opt/tls", "/etc/ssl/internal/private" = "/opt/keys" }
[environments.lab.services.database]
role = "database"
[environments.lab.services.api]
health_url = "http://{address}:8080/health"
[environments.lab.services.voice]
pre_restart = "drain"
[[environments.lab.hosts]]
name = "lab-database-01"
address = "127.0.10.2"
service = "database"
root = "/srv/lab/hosts/lab-database-01/"
[[environments.lab.hosts]]
name = "lab-api-01"
address = "127.0.10.10"
service = "api"
root = "/srv/lab/hosts/lab-api-01"
[[environments.lab.hosts]]
name = "lab-web-01"
address = "127.0.10.11"
service = "web"
[[environments.lab.hosts]]
name = "lab-telpro-01"
address = "127.0.10.12"
service = "telpro"
[[environments.lab.hosts]]
name = "lab-api-02"
address = "127.0.10.13"
service = "api"
[[environments.lab.hosts]]
name = "lab-voice-01"
address = "127.0.10.14"
service = "voice"
[[environments.lab.hosts]]
name = "lab-media-01"
address = "127.0.10.15"
service = "media"
[[environments.lab.hosts]]
name = "lab-ops-01"
address = "127.0.10.16"
service = "ops"
"""


def test_services_in_order() -> None:
    env = parse_inventory(FLEET, "fleet.toml").env()
    # tables first (database, api, voice), then services only hosts name, in host order
    assert env.service_names == ("database", "api", "voice", "web", "telpro", "media", "ops")
    assert env.services_in_order(["api", "web", "voice", "ops", "others"]) == [
        "api",
        "web",
        "voice",
        "ops",
        "telpro",
        "media",
    ]
    # "others" expands where it stands; unknown names are dropped; duplicates kept once
    assert env.services_in_order(["voice", "others", "api", "nosuch", "voice"]) == [
        "voice",
        "web",
        "telpro",
        "media",
        "ops",
        "api",
    ]
    assert env.services_in_order(["api", "web"]) == ["api", "web"]
    assert [h.name for h in env.hosts_for("api")] == ["lab-api-01", "lab-api-02"]


def test_host_path() -> None:
    env = parse_inventory(FLEET, "fleet.toml").env()
    db, api, web = env.host("lab-database-01"), env.host("lab-api-01"), env.host("lab-web-01")
    assert db.root == "/srv/lab/hosts/lab-database-01"  # trailing "/" dropped
    assert env.host_path(api, "/etc/ssl/internal/ca.crt") == "/srv/lab/hosts/lab-api-01/opt/tls/ca.crt"
    assert env.host_path(api, "/etc/ssl/internal") == "/srv/lab/hosts/lab-api-01/opt/tls"
    # the longest matching prefix wins
    assert env.host_path(db, "/etc/ssl/internal/private/db.key") == "/srv/lab/hosts/lab-database-01/opt/keys/db.key"
    # unmapped paths, and paths that only share a string prefix, keep their place under the root
    assert env.host_path(api, "/etc/ssl/internalx/f") == "/srv/lab/hosts/lab-api-01/etc/ssl/internalx/f"
    assert env.host_path(api, "/opt/services/api/vars.yaml") == "/srv/lab/hosts/lab-api-01/opt/services/api/vars.yaml"
    # root "/" (a real host): only the map applies; ".." cannot climb out of the root
    assert env.host_path(web, "/etc/ssl/internal/ca.crt") == "/opt/tls/ca.crt"
    assert env.host_path(api, "/../../etc/passwd") == "/srv/lab/hosts/lab-api-01/etc/passwd"
    with pytest.raises(ValueError):
        env.host_path(api, "relative/path")
    assert env.update_command(api) == "/srv/lab/hosts/lab-api-01/opt/services/api/update.sh --restart-only --yes"
    assert env.update_command(web) == "/opt/services/web/update.sh --restart-only --yes"
    assert env.health_url(env.host("lab-api-02")) == "http://127.0.10.13:8080/health"


def test_default_paths_and_separate_layout() -> None:
    text = BASE.replace(
        '[environments.staging.config_store]\nkind = "ssm"',
        '[environments.staging.tls_secrets]\nlayout = "separate"',
    )
    env = parse_inventory(text, "inventory.toml").env()
    assert env.tls_secret_name("web", "INTERNAL_CA_CRT_B64") == "voiceai/staging/web/INTERNAL_CA_CRT_B64"
    assert env.secret_name("web") == "voiceai/staging/web/secrets"
    assert dict(env.paths) == {"/etc/ssl/internal": "/etc/ssl/internal"}
    assert env.host_path(env.host("staging-api-01"), "/etc/ssl/internal/ca.crt") == "/etc/ssl/internal/ca.crt"


def test_managed_database() -> None:
    text = """\
version = 1
[environments.prod]
namespace = "voiceai/prod"
managed_database = true
"""
    env = parse_inventory(text, "managed.toml").env()
    assert env.managed_database and env.hosts == ()
    with pytest.raises(InventoryError, match="managed database"):
        _ = env.database_host


# -- keys added within version 1: consumes, tls_material, running_check, logs, key_owner, pg_hba_path,
# -- literal user names, a credentials file, the "shared" TLS secret, commands.read_only


def test_added_keys_default_by_role() -> None:
    env = parse_inventory(BASE, "inventory.toml").env()
    db, api = env.service("database"), env.service("api")
    assert (db.consumes, db.tls_material, db.serves_tls) == ((), ("ca", "cert", "key"), True)
    assert (api.consumes, api.tls_material, api.serves_tls) == (("postgres", "redis"), ("ca",), False)
    assert (api.running_check, api.logs) == ("", "")
    assert env.consumers_of("postgres") == ("api",) and env.consumers_of("redis") == ("api",)
    assert env.services_serving_tls() == ("database",)
    assert (env.database.key_owner, env.database.key_owner_ids()) == ("", None)
    assert env.database.pg_hba_path == "/mnt/data/postgres/pg_hba.conf"
    c = env.credentials
    assert (c.secret, c.file, c.from_file, c.postgres_user, c.pgbouncer_admin_user) == (
        "voiceai/staging/database/secrets",
        "",
        False,
        "",
        "",
    )
    assert (env.tls_secrets.layout, env.tls_secrets.name, env.tls_secrets.json_keys) == ("json", "", True)
    assert env.commands.read_only == ()
    assert not env.watch_may_run("telpro_ssl_check") and not env.watch_may_run("running_check")
    api_host = env.host("staging-api-01")
    assert env.running_check_command(api_host) == "" and env.logs_command(api_host) == ""
    assert env.telpro_check_command(api_host) == (
        "docker run --rm --entrypoint kamailio voiceai-telpro -I 2>/dev/null | grep -q hiredis_ssl"
    )


ADDED = _edit(
    "postgres_port = 5432\n",
    'postgres_port = 5432\nkey_owner = "999:1000"\npg_hba_path = "/mnt/data/pg//pg_hba.conf/"\n\n'
    "[environments.staging.credentials]\n"
    'file = "/opt/deployment/probe.env"\npostgres_user = "voiceai"\npgbouncer_admin_user = "admin"\n\n'
    "[environments.staging.tls_secrets]\n"
    'layout = "shared"\nname = "voiceai/staging/internal-tls"\n\n'
    "[environments.staging.commands]\n"
    'read_only = ["running_check"]\n\n'
    "[environments.staging.services.api]\n"
    'consumes = ["redis"]\n'
    'tls_material = ["key", "ca", "cert"]\n'
    'running_check = "docker ps -q --filter name=voiceai-{service} | grep -q ."\n'
    'logs = "docker logs --tail 50 voiceai-{service}"\n\n'
    "[environments.staging.services.web]\n"
    'consumes = ["postgres"]\n',
)


def test_added_keys_read() -> None:
    env = parse_inventory(ADDED, "inventory.toml").env()
    api = env.service("api")
    assert (api.consumes, api.tls_material, api.serves_tls) == (("redis",), ("ca", "cert", "key"), True)
    assert env.service_names == ("api", "web", "database")  # tables in file order
    assert env.consumers_of("postgres") == ("web",)
    assert env.consumers_of("redis") == ("api",)
    assert env.services_serving_tls() == ("api", "database")
    assert (env.database.key_owner, env.database.key_owner_ids()) == ("999:1000", (999, 1000))
    assert env.database.pg_hba_path == "/mnt/data/pg/pg_hba.conf"
    c = env.credentials
    assert (c.secret, c.file, c.from_file) == ("", "/opt/deployment/probe.env", True)
    assert (c.postgres_user, c.pgbouncer_admin_user, c.postgres_user_key) == ("voiceai", "admin", "POSTGRES_USER")
    assert env.tls_secret_name("api", "INTERNAL_CA_CRT_B64") == "voiceai/staging/internal-tls"
    assert env.tls_secret_name("database", "INTERNAL_TLS_KEY_B64") == "voiceai/staging/internal-tls"
    assert env.tls_secrets.json_keys
    assert env.commands.read_only == ("running_check",)
    assert env.watch_may_run("running_check") and not env.watch_may_run("telpro_ssl_check")
    assert not env.watch_may_run("update")
    host = env.host("staging-api-01")
    assert env.running_check_command(host) == "docker ps -q --filter name=voiceai-api | grep -q ."
    assert env.logs_command(host) == "docker logs --tail 50 voiceai-api"
    assert env.running_check_command(env.host("staging-database-01")) == ""


def test_material_variables() -> None:
    from inventory.model import MATERIAL_VARIABLES, MATERIALS

    assert [MATERIAL_VARIABLES[m] for m in MATERIALS] == [
        "INTERNAL_CA_CRT_B64",
        "INTERNAL_TLS_CERT_B64",
        "INTERNAL_TLS_KEY_B64",
    ]


def _service(lines: str) -> str:
    """BASE with a [services.api] table holding `lines` (its first line is line 25)."""
    return _edit('role = "database"\n', f'role = "database"\n\n[environments.staging.services.api]\n{lines}\n')


ADDED_MALFORMED = [
    pytest.param(
        _service('consumes = ["postgres", "redi"]'),
        'inventory.toml:25: environments.staging.services.api.consumes[1]: expected "postgres" or "redis", '
        'got "redi"; did you mean "redis"?',
        id="consumes-unknown",
    ),
    pytest.param(
        _service('consumes = ["redis", "redis"]'),
        'inventory.toml:25: environments.staging.services.api.consumes[1]: "redis" is listed twice; keep one',
        id="consumes-twice",
    ),
    pytest.param(
        _service('consumes = "redis"'),
        'inventory.toml:25: environments.staging.services.api.consumes: expected an array of "postgres" or '
        '"redis", got "redis"',
        id="consumes-not-array",
    ),
    pytest.param(
        _service('tls_material = ["cert", "key"]'),
        'inventory.toml:25: environments.staging.services.api.tls_material: must include "ca": every service '
        "verifies the internal CA (INTERNAL_CA_CRT_B64)",
        id="material-without-ca",
    ),
    pytest.param(
        _service('tls_material = ["ca", "key"]'),
        'inventory.toml:25: environments.staging.services.api.tls_material: "key" without "cert": a host that '
        'holds the server key (INTERNAL_TLS_KEY_B64) needs its certificate too; add "cert", or remove "key"',
        id="material-key-without-cert",
    ),
    pytest.param(
        _service('running_check = "pgrep -f {servce}"'),
        "inventory.toml:25: environments.staging.services.api.running_check: unknown placeholder {servce} "
        "(did you mean {service}?); placeholders are {root} {service} {host} {address}, write {{ and }} for "
        "literal braces",
        id="running-check-placeholder",
    ),
    pytest.param(
        _service('log = "journalctl -u api"'),
        'inventory.toml:25: environments.staging.services.api.log: unknown key "log"; did you mean "logs"?',
        id="logs-typo",
    ),
    pytest.param(
        _edit("postgres_port = 5432", 'postgres_port = 5432\nkey_owner = "postgres"'),
        'inventory.toml:17: environments.staging.database.key_owner: expected "UID:GID" in digits, like '
        '"70:70", or "" (read TLS_KEY_OWNER from the database service\'s configuration, else 70:70), '
        'got "postgres"',
        id="key-owner",
    ),
    pytest.param(
        _edit("postgres_port = 5432", 'postgres_port = 5432\npg_hba_path = "pg_hba.conf"'),
        "inventory.toml:17: environments.staging.database.pg_hba_path: expected an absolute container path "
        'of pg_hba.conf starting with /, got "pg_hba.conf"',
        id="pg-hba-relative",
    ),
    pytest.param(
        _edit('kind = "ssm"', 'kind = "ssm"\n[environments.staging.credentials]\nsecret = "s"\nfile = "/f"'),
        "inventory.toml:22: environments.staging.credentials.file: set either secret (a Secrets Manager JSON "
        "secret) or file (a KEY=VALUE file on the database host), not both; remove one",
        id="secret-and-file",
    ),
    pytest.param(
        _edit('kind = "ssm"', 'kind = "ssm"\n[environments.staging.credentials]\nfile = "probe.env"'),
        "inventory.toml:21: environments.staging.credentials.file: expected an absolute path of the KEY=VALUE "
        'file on the database host starting with /, got "probe.env"',
        id="file-relative",
    ),
    pytest.param(
        _edit('kind = "ssm"', 'kind = "ssm"\n[environments.staging.credentials]\nredis_password = "hunter2"'),
        "inventory.toml:21: environments.staging.credentials.redis_password: a password is never written in "
        "the inventory; name the key that holds it in the secret (or file) instead, e.g. redis_password_key = "
        '"REDIS_PASSWORD", and remove redis_password',
        id="password-literal",
    ),
    pytest.param(
        _edit('kind = "ssm"', 'kind = "ssm"\n[environments.staging.tls_secrets]\nlayout = "shared"'),
        'inventory.toml:20: environments.staging.tls_secrets.name: layout = "shared" needs name = "..." (the '
        "one Secrets Manager JSON secret holding every service's INTERNAL_* values, e.g. "
        '"voiceai/staging/internal-tls")',
        id="shared-without-name",
    ),
    pytest.param(
        _edit('kind = "ssm"', 'kind = "ssm"\n[environments.staging.tls_secrets]\nname = "x/tls"'),
        'inventory.toml:21: environments.staging.tls_secrets.name: is only read with layout = "shared"; '
        'remove it, or set layout = "shared"',
        id="name-without-shared",
    ),
    pytest.param(
        _edit(
            'kind = "ssm"',
            'kind = "ssm"\n[environments.staging.tls_secrets]\nlayout = "shared"\nname = "t"\nsecret_suffix = "s"',
        ),
        'inventory.toml:23: environments.staging.tls_secrets.secret_suffix: is not used with layout = "shared" '
        "(name is the secret); remove it",
        id="suffix-with-shared",
    ),
    pytest.param(
        _edit('kind = "ssm"', 'kind = "ssm"\n[environments.staging.commands]\nread_only = ["update"]'),
        'inventory.toml:21: environments.staging.commands.read_only[0]: expected "telpro_ssl_check" or '
        '"running_check", got "update"',
        id="read-only-update",
    ),
]


@pytest.mark.parametrize(("text", "message"), ADDED_MALFORMED)
def test_added_keys_malformed(text: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inventory.toml")
    assert str(info.value) == message


def _quoting_env(root: str, host_name: str) -> Environment:
    text = f"""\
version = 1
[environments.q]
namespace = "voiceai/q"
managed_database = true
[environments.q.commands]
update = "{{root}}/opt/services/{{service}}/update.sh --restart-only --host {{host}}"
telpro_ssl_check = "awk 'NR == 1 {{print}}' {{root}}/opt/services/{{service}}/modules | grep -qxF {{host}}"
[environments.q.services.api]
running_check = "test -x {{root}}/opt/services/{{service}}/update.sh && echo {{host}} {{address}}"
logs = "cat {{root}}/opt/services/{{service}}/log"
[[environments.q.hosts]]
name = {json.dumps(host_name)}
address = "127.0.0.1"
service = "api"
root = {json.dumps(root)}
"""
    return parse_inventory(text, "q.toml").env()


def _bash(command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True, timeout=30)


def test_commands_are_shell_quoted(tmp_path: Path) -> None:
    """A root with a space, a `$` and a quote, and a host name that tries command substitution, reach
    the commands as the literal words they are: bash itself is the oracle."""
    root = tmp_path / "h 1$HOME'q"
    svc = root / "opt/services/api"
    svc.mkdir(parents=True)
    script = svc / "update.sh"
    script.write_text('#!/bin/sh\nprintf "%s|" "$0" "$@"\n')
    script.chmod(0o755)
    (svc / "log").write_text("the log\n")
    hostile = "api-01$(touch pwned)`touch pwned2`;touch pwned3 'x\""
    (svc / "modules").write_text(f"{hostile}\nother\n")
    env = _quoting_env(str(root), hostile)
    host = env.hosts[0]

    update = env.update_command(host)
    assert update.startswith(shlex.quote(str(root)) + "/opt/services/api/update.sh ")
    r = _bash(update, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"{script}|--restart-only|--host|{hostile}|"

    r = _bash(env.running_check_command(host), tmp_path)
    assert (r.returncode, r.stdout) == (0, f"{hostile} 127.0.0.1\n")
    r = _bash(env.logs_command(host), tmp_path)
    assert (r.returncode, r.stdout) == (0, "the log\n")
    # telpro_ssl_check keeps braces that are not placeholders (awk's {print}) as written
    telpro = env.telpro_check_command(host)
    assert telpro.startswith("awk 'NR == 1 {print}' ")
    assert _bash(telpro, tmp_path).returncode == 0
    assert not any((tmp_path / n).exists() for n in ("pwned", "pwned2", "pwned3"))


def test_empty_root_vanishes_inside_a_word_and_stays_a_word_alone() -> None:
    env = _quoting_env("/", "api-01")
    host = env.hosts[0]
    assert env.update_command(host) == "/opt/services/api/update.sh --restart-only --host api-01"
    from inventory.model import render_command

    assert render_command("ls {root} -d", {"root": ""}) == "ls '' -d"
    assert render_command("x{root};y", {"root": ""}) == "x;y"
    assert render_command("echo {{{root}}}", {"root": "a b"}) == "echo {'a b'}"


def test_example_shows_the_added_keys() -> None:
    env = load_inventory(EXAMPLE).env()
    assert env.service("database").tls_material == ("ca", "cert", "key") and env.service("database").consumes == ()
    api = env.host("staging-api-01")
    assert env.running_check_command(api) == (
        'out=$(docker compose --project-directory /opt/services/api ps --status running -q) || exit 2; test -n "$out"'
    )
    assert env.logs_command(api).startswith("docker compose --project-directory /opt/services/api logs ")
    assert env.running_check_command(env.host("staging-voice-01")) == ""
    assert (env.database.key_owner, env.database.pg_hba_path) == ("", "/mnt/data/postgres/pg_hba.conf")
    assert env.commands.read_only == ()


# -- loaders that refuse cleanly: version first, size, nesting, numbers, names ------------------------

V2 = (
    "unsupported inventory version 2; this cockpit reads version 1 only — upgrade the cockpit, or write "
    "the file in a supported version (see docs/inventory.md)"
)


@pytest.mark.parametrize(
    ("rest", "line"),
    [
        pytest.param("this is [[ not toml = = \x01\n", 1, id="garbage"),
        pytest.param("a = " + "[" * 5000, 1, id="deep-brackets"),
        pytest.param(".".join(["k"] * 5000) + " = 1\n", 1, id="deep-dotted-key"),
        pytest.param("# padding\n" * 200_000, 1, id="over-1-MiB"),
        pytest.param(BASE.replace("version = 1\n", ""), 1, id="valid-rest"),
    ],
)
def test_an_unsupported_version_is_refused_first(rest: str, line: int) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory("version = 2\n" + rest, "inventory.toml")
    assert str(info.value) == f"inventory.toml:{line}: version: {V2}"


def test_the_version_scan_reads_only_top_level_statements(tmp_path: Path) -> None:
    # after comments, with a trailing comment; not inside a multi-line string or a table
    text = '# an inventory\n\ndefault_env = """\nversion = 1\n"""\nversion = 2 # newer\n[t]\nversion = 1\n'
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inventory.toml")
    assert str(info.value) == f"inventory.toml:6: version: {V2}"
    # bytes that are not UTF-8, and a file over the limit, still say the version
    f = tmp_path / "inventory.toml"
    f.write_bytes(b"version = 2\n\xff\xfe\x00 garbage\n")
    with pytest.raises(InventoryError, match=f"^{re.escape(str(f))}:1: version: unsupported inventory version 2"):
        load_inventory(f)
    f.write_bytes(b"version = 2\n" + b"#" * (3 << 20))
    with pytest.raises(InventoryError, match=f"^{re.escape(str(f))}:1: version: unsupported inventory version 2"):
        load_inventory(f)


def test_size_limit(tmp_path: Path) -> None:
    padding = "# padding\n"
    room = (1 << 20) - len(BASE.encode())
    at_limit = BASE + padding * (room // len(padding)) + "#" * (room % len(padding))
    assert len(at_limit.encode()) == 1 << 20
    assert parse_inventory(at_limit, "inventory.toml").env_names == ("staging", "production")
    over = at_limit + "#"
    message = (
        "inventory.toml: the file is larger than 1 MiB, the most an inventory may be; check that this is the right file"
    )
    with pytest.raises(InventoryError) as info:
        parse_inventory(over, "inventory.toml")
    assert str(info.value) == message
    # multi-byte characters count as bytes
    with pytest.raises(InventoryError, match="larger than 1 MiB"):
        parse_inventory(BASE + "#" + "é" * (1 << 19), "inventory.toml")
    f = tmp_path / "inventory.toml"
    f.write_bytes(BASE.encode() + b"#" * (8 << 20))
    with pytest.raises(InventoryError) as info:
        load_inventory(f)
    assert str(info.value) == message.replace("inventory.toml", str(f), 1)


DEEP = (
    "TOML nested deeper than 16 levels (tables and arrays inside each other); an inventory never nests that "
    "deep — check this part of the file"
)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        pytest.param("x = " + "[" * 17 + "]" * 17, f"inventory.toml:8: environments.staging.x: {DEEP}", id="arrays"),
        pytest.param(
            "x = " + "{ a = " * 17 + "1" + " }" * 17, f"inventory.toml:8: environments.staging.x: {DEEP}", id="inline"
        ),
        pytest.param(
            "x = [" + "{ a = [" * 8 + "]}" * 8 + "]", f"inventory.toml:8: environments.staging.x: {DEEP}", id="mixed"
        ),
        pytest.param(
            ".".join(["k"] * 17) + " = 1",
            f"inventory.toml:8: environments.staging.{'.'.join(['k'] * 17)}: {DEEP}",
            id="dotted-key",
        ),
        pytest.param(
            "[" + ".".join(["t"] * 17) + "]", f"inventory.toml:8: {'.'.join(['t'] * 17)}: {DEEP}", id="header"
        ),
        pytest.param(
            "[" + ".".join(["t"] * 9) + "]\n" + ".".join(["k"] * 9) + " = 1",
            f"inventory.toml:9: {'.'.join(['t'] * 9)}.{'.'.join(['k'] * 8)}: {DEEP}",
            id="header-and-dotted-key",
        ),
    ],
)
def test_deep_nesting_is_refused_with_its_line(line: str, message: str) -> None:
    text = _edit('after = ""\n', f'after = ""\n{line}\n')
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inventory.toml")
    assert str(info.value) == message


def test_sixteen_levels_are_read() -> None:
    # the reader lets 16 levels through; the inventory then refuses the key it does not know
    text = _edit('after = ""\n', 'after = ""\nx = ' + "[" * 14 + "]" * 14 + "\n")
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inventory.toml")
    assert str(info.value).startswith('inventory.toml:8: environments.staging.x: unknown key "x"')


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("inf", "inf"),
        ("-inf", "-inf"),
        ("nan", "nan"),
        ("1e999", "inf"),
        ("0", "0"),
        ("0.0", "0.0"),
        ("-1", "-1"),
        ("9" * 400, "a number of 400 digits"),
        ('"10"', '"10"'),
    ],
)
def test_timeouts_are_finite_and_positive(value: str, shown: str) -> None:
    text = _edit('region = "eu-west-1"', f'region = "eu-west-1"\nssh.command_timeout = {value}')
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inventory.toml")
    assert str(info.value) == (
        f"inventory.toml:7: environments.staging.ssh.command_timeout: expected a number of seconds > 0, got {shown}"
    )


def test_a_huge_integer_is_refused_with_its_line() -> None:
    text = _edit("postgres_port = 5432", "postgres_port = " + "9" * 5000)
    with pytest.raises(InventoryError) as info:
        parse_inventory(text, "inventory.toml")
    assert str(info.value) == (
        "inventory.toml:16: environments.staging.database.postgres_port: an integer of more than 4300 digits; "
        "write a smaller number"
    )


def _one_env(name: str = "prod", namespace: str = "voiceai/prod", extra: str = "") -> str:
    """One environment (`name` as written in its header) with one api host; `extra` is line 4."""
    return (
        f"version = 1\n[environments.{name}]\nnamespace = {json.dumps(namespace)}\n{extra}\n"
        "managed_database = true\n"
        "[[environments." + name + '.hosts]]\nname = "h"\naddress = "10.0.0.1"\nservice = "api"\n'
    )


@pytest.mark.parametrize(
    "name",
    ['"../../x"', '".hidden"', '"a b"', '"a..b"', '"a/b"', '"é"', "a" * 65, '"-x"'],
)
def test_environment_names_are_safe_file_names(name: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_one_env(name), "inventory.toml")
    shown = json.loads(name) if name.startswith('"') else name
    key, quoted = format_key_path(("environments", shown)), json.dumps(shown, ensure_ascii=False)
    assert str(info.value) == (
        f"inventory.toml:2: {key}: bad environment name {quoted}; "
        "use letters, digits, '_', '-' and '.', starting with a letter or digit, without \"..\", at most 64 "
        "characters (the cockpit names files after it: <env>.jsonl)"
    )


def test_environment_names_that_are_file_names_load() -> None:
    name = "prod-eu.1_x" + "a" * 53  # 64 characters
    assert parse_inventory(_one_env(json.dumps(name)), "inventory.toml").env_names == (name,)


@pytest.mark.parametrize(
    ("namespace", "problem"),
    [
        (
            "voice ai/prod",
            "the namespace may hold only letters, digits, '_', '.', '-' and '/' (what SSM parameter names and "
            'Secrets Manager names both accept), got "voice ai/prod"',
        ),
        (
            "voiceai+x/prod",
            "the namespace may hold only letters, digits, '_', '.', '-' and '/' (what SSM parameter names and "
            'Secrets Manager names both accept), got "voiceai+x/prod"',
        ),
        (
            "voiceai//prod",
            'the namespace has an empty level ("//"), which SSM parameter names refuse; got "voiceai//prod"',
        ),
        *(
            (
                ns,
                'SSM refuses parameter names that begin with "aws" or "ssm" (in any case), and every SSM name here '
                f'begins with /<namespace>/; got "{ns}"',
            )
            for ns in ("aws/prod", "SSM/prod", "AwsOme/prod", "ssm-x")
        ),
        (
            "/".join(["n"] * 14),
            "SSM parameter names have at most 15 levels, and /<namespace>/<service>/<VAR> would have 16; use a "
            "namespace of at most 13 levels",
        ),
    ],
)
def test_namespaces_that_aws_refuses(namespace: str, problem: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_one_env(namespace=namespace), "inventory.toml")
    assert str(info.value) == f"inventory.toml:3: environments.prod.namespace: {problem}"


def test_names_too_long_for_aws() -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_one_env(namespace="n" * 1000), "inventory.toml")
    assert str(info.value) == (
        'inventory.toml:9: environments.prod.hosts[0].service: the SSM parameter names of service "api" would be '
        "1070 characters long with a 64-character variable name; SSM allows at most 1011 — shorten the namespace "
        "or the service name"
    )
    # the default credentials secret, <namespace>/database/secrets, is reported at the namespace
    with pytest.raises(InventoryError) as info:
        parse_inventory(_one_env(namespace="n" * 500), "inventory.toml")
    assert str(info.value) == (
        "inventory.toml:3: environments.prod.namespace: the credentials secret is 517 characters long; "
        "Secrets Manager allows at most 512"
    )
    # with the separate layout, the per-value secrets are the longest names
    with pytest.raises(InventoryError) as info:
        parse_inventory(_one_env(namespace="n" * 489, extra='tls_secrets.layout = "separate"'), "inventory.toml")
    assert str(info.value) == (
        "inventory.toml:9: environments.prod.hosts[0].service: the secret <namespace>/api/INTERNAL_TLS_CERT_B64 "
        'of service "api" would be 515 characters long; Secrets Manager allows at most 512 — shorten the namespace '
        "or the service name"
    )
    assert parse_inventory(_one_env(namespace="n" * 489), "inventory.toml").env().namespace == "n" * 489


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            'tls_secrets.secret_suffix = "sec rets"',
            "inventory.toml:4: environments.prod.tls_secrets.secret_suffix: the secret suffix (the end of a secret "
            'name) may hold only letters, digits and /_+=.@- (Secrets Manager\'s rule), got "sec rets"',
        ),
        (
            'tls_secrets = { layout = "shared", name = "internal tls" }',
            "inventory.toml:4: environments.prod.tls_secrets.name: a Secrets Manager secret name may hold only "
            'letters, digits and /_+=.@- (Secrets Manager\'s rule), got "internal tls"',
        ),
        (
            'credentials.secret = "db secrets"',
            "inventory.toml:4: environments.prod.credentials.secret: the credentials secret may hold only letters, "
            'digits and /_+=.@- (Secrets Manager\'s rule), got "db secrets"',
        ),
        (
            f'credentials.secret = "{"s" * 513}"',
            "inventory.toml:4: environments.prod.credentials.secret: the credentials secret is 513 characters long; "
            "Secrets Manager allows at most 512",
        ),
    ],
)
def test_secret_names_that_aws_refuses(extra: str, message: str) -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_one_env(extra=extra), "inventory.toml")
    assert str(info.value) == message


def test_secret_names_that_aws_accepts() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:voiceai/prod/database/secrets-AbCdEf"
    env = parse_inventory(_one_env(extra=f'credentials.secret = "{arn}"'), "i.toml").env()
    assert env.credentials.secret == arn
    env = parse_inventory(_one_env(extra='tls_secrets = { layout = "shared", name = "a/b_c+d=e.f@g-h" }'), "i").env()
    assert env.tls_secret_name("api", "INTERNAL_CA_CRT_B64") == "a/b_c+d=e.f@g-h"


def test_paths_with_nul_are_refused() -> None:
    with pytest.raises(InventoryError) as info:
        parse_inventory(_one_env(extra='ssh.known_hosts = "~x\\u0000y"'), "inventory.toml")
    assert str(info.value) == (
        'inventory.toml:4: environments.prod.ssh.known_hosts: a path cannot hold a NUL character, got "~x\\u0000y"'
    )
    with pytest.raises(InventoryError, match=r"^inventory\.toml:4: environments\.prod\.database\.pg_hba_path: a path"):
        parse_inventory(
            _one_env(extra='database = { host = "h", dns_name = "d", pg_hba_path = "/a\\u0000" }'), "inventory.toml"
        )
