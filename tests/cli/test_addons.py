"""``addons:*`` against a real server that has no add-on servers set up, so that it runs
Redis and PostgreSQL itself; tests/e2e/test_addons.py deploys apps that use them."""

from __future__ import annotations

import json

from cli.runner import Cli
from dockyard.addons import redis as redis_addon
from dockyard.cli.addons import parse_options


def test_services_and_plans_are_listed(alice: Cli) -> None:
    services = alice.out("addons:services")
    for name in ("postgres", "redis", "mysql", "s3"):
        assert name in services
    plans = alice.out("addons:plans", "postgres").splitlines()
    assert plans[0].split() == ["Slug", "Name", "Description"]
    assert plans[1].split()[:2] == ["default", "postgres:essential"]
    assert "postgres:standard" in plans[2]
    assert json.loads(alice.out("addons:plans", "redis", "--json"))[0]["name"] == "redis:mini"
    assert "Couldn't find add-on service 'nosuch'" in alice.fails("addons:plans", "nosuch")


def test_bad_input_is_refused_with_the_reason(alice: Cli, app: str) -> None:
    assert "uppercase" in alice.fails("addons:create", "redis", "--as", "cache", "-a", app)
    assert "has no plan 'huge'" in alice.fails("addons:create", "postgres:huge", "-a", app)
    assert "not --NAME VALUE" in alice.fails("addons:create", "redis", "-a", app, "--", "x")
    assert "Couldn't find add-on service 'nosuch'" in alice.fails(
        "addons:create", "nosuch", "-a", app
    )
    assert "Couldn't find that add-on" in alice.fails("addons:upgrade", "NOPE", "big", "-a", app)
    assert alice.out("config", "--json", "-a", app) == "{}\n"
    assert alice.out("addons", "-a", app) == ""


def test_a_platform_run_postgres_is_created_upgraded_downgraded_and_destroyed(
    alice: Cli, app: str
) -> None:
    from dockyard.addons.postgres import Postgres

    try:
        created = alice.run("addons:create", "postgres", "-a", app)
        assert "as DATABASE_URL" in created.stderr
        url = json.loads(alice.out("config", "--json", "-a", app))["DATABASE_URL"]
        assert url.startswith("postgres://u")
        assert "@127.0.0.1:" in url
        assert ":5432/" not in url  # the platform's own server, not the machine's
        upgraded = alice.run("addons:upgrade", "DATABASE", "premium", "-a", app)
        assert "is upgraded to postgres:premium" in upgraded.stderr
        info = alice.out("pg:info", "-a", app)
        assert "postgres:premium" in info
        assert "/400" in info  # the role's connection limit, from the server
        assert "already on the postgres:premium plan" in alice.fails(
            "addons:upgrade", "DATABASE", "postgres:premium", "-a", app
        )
        alice.run("addons:downgrade", "DATABASE", "essential", "-a", app)
        assert "postgres:essential" in alice.out("addons", "-a", app)
        assert json.loads(alice.out("config", "--json", "-a", app))["DATABASE_URL"] == url
        name = json.loads(alice.out("addons", "--json", "-a", app))[0]["name"]
        alice.run("addons:destroy", name, "-a", app, "--confirm", app)
        assert alice.out("config", "--json", "-a", app) == "{}\n"
    finally:
        server = Postgres("", alice.server.data_dir / "addons" / "postgres").server
        assert server is not None
        server.stop()


def test_a_platform_run_redis_is_created_shared_detached_and_destroyed(
    alice: Cli, app: str
) -> None:
    other = alice.create_app()
    try:
        created = alice.run("addons:create", "redis", "--name", f"{app}-cache", "-a", app)
        assert f"Creating redis on ⬢ {app}... done, v2" in created.stderr
        assert f"Created {app}-cache as REDIS_URL, REDIS_KEY_PREFIX" in created.stderr
        config = json.loads(alice.out("config", "--json", "-a", app))
        assert config["REDIS_URL"].startswith("redis://:")
        assert "is upgraded to redis:standard" in (
            alice.run("addons:upgrade", "REDIS", "standard", "-a", app).stderr
        )
        assert "/ 256 MB" in alice.out("addons:info", f"{app}-cache")  # maxmemory, at once

        attached = alice.run("addons:attach", f"{app}-cache", "-a", other, "--as", "CACHE")
        assert f"Attached {app}-cache as CACHE" in attached.stderr
        assert "CACHE_URL" in json.loads(alice.out("config", "--json", "-a", other))
        info = alice.out("addons:info", f"{app}-cache")
        assert f"Owning app:   {app}" in info
        assert f"{other}::CACHE" in info
        assert "Memory:" in info

        refused = alice.fails("addons:destroy", f"{app}-cache", "-a", app, "--confirm", app)
        assert f"still attached to {other} (as CACHE)" in refused
        assert "did not match" in alice.fails(
            "addons:destroy", f"{app}-cache", "-a", app, "--confirm", "x"
        )
        alice.run("addons:detach", "CACHE", "-a", other)
        assert "CACHE_URL" not in json.loads(alice.out("config", "--json", "-a", other))

        alice.run("addons:rotate", "REDIS", "-a", app)
        rotated = json.loads(alice.out("config", "--json", "-a", app))["REDIS_URL"]
        assert rotated != config["REDIS_URL"]
        alice.run("addons:destroy", f"{app}-cache", "-a", app, "--confirm", app)
        assert "REDIS_URL" not in json.loads(alice.out("config", "--json", "-a", app))
        assert alice.out("addons", "-a", app) == ""
    finally:
        redis_addon.stop_all(alice.server.data_dir / "addons" / "redis")


def test_provider_options_are_parsed() -> None:
    assert parse_options(("--version", "16", "--fast", "--size=2")) == {
        "version": "16",
        "fast": "true",
        "size": "2",
    }
