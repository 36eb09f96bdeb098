"""``releases``, ``releases:info``, ``rollback`` and ``releases:rollback``."""

from __future__ import annotations

import json
import re

from cli.runner import Cli


def config(alice: Cli, app: str) -> dict[str, str]:
    return dict(json.loads(alice.out("config", "-j", "-a", app)))


def test_releases_table_and_json(alice: Cli, app: str) -> None:
    alice.set_config(app, A="1")
    alice.set_config(app, B="2")

    shown = alice.out("releases", "-a", app)
    lines = shown.splitlines()
    assert lines[0] == f"=== {app} Releases - Current: v3"
    email = re.escape(alice.email)
    assert re.fullmatch(rf"v3\s+Set B config vars\s+{email}\s+\d{{4}}/\d\d/\d\d .*ago\)", lines[2])
    assert re.match(rf"v2\s+Set A config vars\s+{email}", lines[3])
    assert re.match(rf"v1\s+Initial release\s+{email}", lines[4])

    listed = json.loads(alice.out("releases", "--json", "-a", app))
    assert [r["version"] for r in listed] == [3, 2, 1]
    assert [r["current"] for r in listed] == [True, False, False]

    two = json.loads(alice.out("releases", "-n", "2", "--json", "-a", app))
    assert [r["version"] for r in two] == [3, 2]


def test_release_info(alice: Cli, app: str) -> None:
    alice.set_config(app, A="one two")
    alice.set_config(app, A=None)

    shown = alice.out("releases:info", "v2", "-a", app)
    assert shown.startswith("=== Release v2\n")
    assert re.search(r"^Change:\s+Set A config vars$", shown, re.MULTILINE)
    assert re.search(rf"^By:\s+{re.escape(alice.email)}$", shown, re.MULTILINE)
    assert re.search(r"^Current:\s+false$", shown, re.MULTILINE)
    assert shown.endswith("=== v2 Config vars\n\nA: one two\n")
    assert alice.out("releases:info", "2", "-s", "-a", app).endswith("A='one two'\n")

    current = alice.out("releases:info", "-a", app)
    assert current.startswith("=== Release v3\n")
    assert json.loads(alice.out("releases:info", "v1", "--json", "-a", app))["version"] == 1


def test_rollback_to_the_previous_release(alice: Cli, app: str) -> None:
    alice.set_config(app, A="1")
    alice.set_config(app, A="2", B="3")

    result = alice.run("rollback", "-a", app)
    assert f"Rolling back ⬢ {app} to v2... done, v4" in result.stderr
    assert config(alice, app) == {"A": "1"}
    latest = json.loads(alice.out("releases", "-n", "1", "--json", "-a", app))[0]
    assert (latest["version"], latest["description"]) == (4, "Rollback to v2")


def test_rollback_to_a_version(alice: Cli, app: str) -> None:
    alice.set_config(app, A="1")
    alice.set_config(app, A="2")
    result = alice.run("rollback", "v1", "-a", app)
    assert f"Rolling back ⬢ {app} to v1... done, v4" in result.stderr
    assert config(alice, app) == {}
    alice.run("rollback", "3", "-a", app)
    assert config(alice, app) == {"A": "2"}
    # Heroku's name for it too.
    result = alice.run("releases:rollback", "v2", "-a", app)
    assert f"Rolling back ⬢ {app} to v2... done, v6" in result.stderr
    assert config(alice, app) == {"A": "1"}


def test_rollback_failures(alice: Cli, app: str) -> None:
    assert "nothing to roll back to" in alice.fails("rollback", "-a", app)
    assert f"Couldn't find release 9 of {app}" in alice.fails("rollback", "v9", "-a", app)
    assert "is not a release version" in alice.fails("rollback", "latest", "-a", app)
    assert f"Couldn't find release 7 of {app}" in alice.fails("releases:info", "v7", "-a", app)


def test_releases_output_without_a_release_command(alice: Cli, app: str) -> None:
    alice.set_config(app, A="1")
    result = alice.run("releases:output", "-a", app)
    assert result.code == 0, result
    assert "Release v2 has no release command output" in result.stderr
    assert result.stdout == ""
    assert f"Couldn't find release 9 of {app}" in alice.fails("releases:output", "v9", "-a", app)
