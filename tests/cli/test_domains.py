"""``domains``, ``domains:add``, ``domains:remove`` and ``maintenance``, ``maintenance:on|off``
against a real server; the router's side of them is in tests/e2e/test_router.py."""

from __future__ import annotations

import json

from cli.runner import Cli


def test_domains_are_added_listed_and_removed(alice: Cli, app: str) -> None:
    shown = alice.out("domains", "-a", app)
    assert shown == f"=== {app} Default Domain\n{app}.localhost\n"

    result = alice.run("domains:add", "www.example.org", "-a", app)
    assert f"Adding www.example.org to ⬢ {app}... done" in result.stderr
    assert f"point to the DNS Target {app}.localhost (CNAME record)" in result.stderr
    alice.run("domains:add", "*.example.org", "-a", app)
    added = json.loads(alice.out("domains:add", "example.org", "--json", "-a", app))
    assert added["kind"] == "custom"

    shown = alice.out("domains", "-a", app)
    assert shown.startswith(f"=== {app} Default Domain\n{app}.localhost\n\n")
    lines = shown.splitlines()
    assert lines[3] == f"=== {app} Custom Domains"
    assert lines[4].split() == ["Domain", "Name", "DNS", "Record", "Type", "DNS", "Target"]
    assert [line.split()[0] for line in lines[5:]] == [
        "*.example.org",
        "example.org",
        "www.example.org",
    ]
    assert "ALIAS or ANAME" in lines[6]
    listed = json.loads(alice.out("domains", "--json", "-a", app))
    assert len(listed) == 4

    result = alice.run("domains:remove", "www.example.org", "-a", app)
    assert f"Removing www.example.org from ⬢ {app}... done" in result.stderr
    assert "www.example.org" not in alice.out("domains", "-a", app)


def test_bad_and_taken_hostnames_are_refused(alice: Cli, app: str) -> None:
    assert "is not a valid hostname" in alice.fails("domains:add", "under_score.org", "-a", app)
    alice.run("domains:add", "taken.example.net", "-a", app)
    other = alice.create_app()
    assert "already in use by another app" in alice.fails(
        "domains:add", "taken.example.net", "-a", other
    )
    assert "default hostname" in alice.fails("domains:remove", f"{app}.localhost", "-a", app)


def test_maintenance_switches_on_and_off(alice: Cli, app: str) -> None:
    assert alice.out("maintenance", "-a", app) == "off\n"
    result = alice.run("maintenance:on", "-a", app)
    assert f"Enabling maintenance mode for ⬢ {app}... done" in result.stderr
    assert alice.out("maintenance", "-a", app) == "on\n"
    assert json.loads(alice.out("apps:info", "--json", "-a", app))["app"]["maintenance"] is True
    result = alice.run("maintenance:off", "-a", app)
    assert f"Disabling maintenance mode for ⬢ {app}... done" in result.stderr
    assert alice.out("maintenance", "-a", app) == "off\n"
