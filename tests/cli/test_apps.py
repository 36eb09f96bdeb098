"""``apps``, ``apps:create``, ``apps:info``, ``apps:rename``, ``apps:destroy``, and finding
the app from ``-a``, ``-r REMOTE`` or the git remote ``dockyard``."""

from __future__ import annotations

import json
import re

from cli.runner import Cli, Users, app_name
from dockyard import accounts, apps


def remotes(cli: Cli) -> dict[str, str]:
    lines = cli.git("remote", "-v").splitlines()
    return {name: url for name, url, kind in (line.split() for line in lines) if kind == "(push)"}


def test_create_with_a_name(alice: Cli) -> None:
    name = app_name()
    result = alice.run("apps:create", name)
    assert f"Creating ⬢ {name}... done" in result.stderr
    assert (
        result.stdout
        == f"http://{name}.localhost:{alice.server.http_port}/ | {alice.server.url}/{name}.git\n"
    )


def test_create_without_a_name_picks_one(alice: Cli) -> None:
    result = alice.run("apps:create", "--json")
    created = json.loads(result.stdout)
    assert re.fullmatch(r"[a-z]+-[a-z]+-\d{5}", created["name"])
    assert f"Creating app... done, ⬢ {created['name']}" in result.stderr
    assert created["owner"]["email"] == alice.email


def test_create_in_a_git_repo_adds_the_remote(alice: Cli) -> None:
    alice.git("init", "--quiet")
    result = alice.run("apps:create")
    assert "Git remote dockyard added" in result.stderr
    web_url, git_url = result.stdout.strip().split(" | ")
    name = git_url.rsplit("/", 1)[1].removesuffix(".git")
    assert remotes(alice) == {"dockyard": git_url}

    # The app is now found from the remote, also from a subdirectory.
    (alice.cwd / "sub").mkdir()
    info = json.loads(alice.run("apps:info", "--json", cwd=alice.cwd / "sub").stdout)
    assert info["app"]["name"] == name
    assert info["app"]["web_url"] == web_url
    alice.run("config:set", "FROM_REMOTE=yes")
    assert alice.out("config:get", "FROM_REMOTE", "-a", name) == "yes\n"


def test_create_with_another_remote_name_and_without_remote(alice: Cli) -> None:
    alice.git("init", "--quiet")
    staging = app_name("staging")
    alice.run("apps:create", staging, "--remote", "staging")
    alice.run("apps:create", app_name(), "--no-remote")
    assert remotes(alice) == {"staging": f"{alice.server.url}/{staging}.git"}

    # -r picks the app from a remote's URL; without -a/-r the `dockyard` remote is missing.
    assert alice.out("apps:info", "-r", "staging", "--json").count(staging) > 0
    error = alice.fails("apps:info")
    assert "no app specified" in error
    assert "-a APP" in error
    assert "no git remote named 'nope'" in alice.fails("apps:info", "-r", "nope")


def test_app_from_an_ssh_remote(alice: Cli, app: str) -> None:
    alice.git("init", "--quiet")
    alice.git("remote", "add", "dockyard", f"ssh://git@127.0.0.1:2222/{app}.git")
    alice.git("remote", "add", "short", f"git@127.0.0.1:{app}.git")
    assert json.loads(alice.out("apps:info", "--json"))["app"]["name"] == app
    assert json.loads(alice.out("apps:info", "--json", "-r", "short"))["app"]["name"] == app


def test_no_app_outside_a_repository(alice: Cli) -> None:
    error = alice.fails("config")
    assert "no app specified" in error
    assert "-r REMOTE" in error


def test_apps_lists_own_and_shared_apps(users: Users) -> None:
    alice, bob = users.new(), users.new()
    mine, shared = app_name("mine"), app_name("shared")
    alice.create_app(mine)
    bob.create_app(shared)
    bob.share(shared, alice.email)

    listed = alice.out("apps")
    assert listed.startswith(f"=== {alice.email} Apps\n{mine}\n")
    assert "=== Collaborated Apps" in listed
    assert re.search(rf"^{shared}\s+{bob.email}$", listed, re.MULTILINE)

    as_json = json.loads(alice.out("apps", "--json"))
    assert sorted(a["name"] for a in as_json) == sorted([mine, shared])
    assert {a["name"]: a["owner"]["email"] for a in as_json}[shared] == bob.email


def test_apps_when_there_are_none(alice: Cli) -> None:
    result = alice.run("apps")
    assert result.stdout == ""
    assert "You have no apps." in result.stderr
    assert json.loads(alice.out("apps", "--json")) == []


def test_apps_info(alice: Cli, app: str) -> None:
    shown = alice.out("apps:info", "-a", app)
    assert shown.startswith(f"=== {app}\n")
    assert re.search(rf"^Owner:\s+{re.escape(alice.email)}$", shown, re.MULTILINE)
    assert re.search(rf"^Git URL:\s+{re.escape(alice.server.url)}/{app}\.git$", shown, re.M)
    assert re.search(
        rf"^Web URL:\s+http://{app}\.localhost:{alice.server.http_port}/$", shown, re.MULTILINE
    )

    info = json.loads(alice.out("apps:info", "-a", app, "--json"))
    assert set(info) == {"app", "addons", "collaborators"}
    assert info["app"]["name"] == app
    assert info["app"]["stack"]["name"]


def test_rename_updates_the_git_remote(alice: Cli) -> None:
    alice.git("init", "--quiet")
    old, new = app_name("old"), app_name("new")
    alice.run("apps:create", old)
    result = alice.run("apps:rename", new)
    assert f"Renaming {old} to {new}... done" in result.stderr
    assert "Git remote dockyard updated" in result.stderr
    assert (
        result.stdout
        == f"http://{new}.localhost:{alice.server.http_port}/ | {alice.server.url}/{new}.git\n"
    )
    assert remotes(alice) == {"dockyard": f"{alice.server.url}/{new}.git"}
    assert json.loads(alice.out("apps:info", "--json"))["app"]["name"] == new
    assert "Couldn't find that app" in alice.fails("apps:info", "-a", old)


def test_rename_to_a_bad_name(alice: Cli, app: str) -> None:
    error = alice.fails("apps:rename", "Not_Valid", "-a", app)
    assert "Name 'Not_Valid' is invalid" in error


def test_destroy_needs_a_matching_confirm(alice: Cli) -> None:
    alice.git("init", "--quiet")
    name = app_name()
    alice.run("apps:create", name)

    assert f"--confirm {name}" in alice.fails("apps:destroy")
    assert "did not match" in alice.fails("apps:destroy", "--confirm", "other-app")
    alice.run("apps:info")  # still there

    result = alice.run("apps:destroy", "--confirm", name)
    assert f"Destroying ⬢ {name} (including all add-ons)... done" in result.stderr
    assert "Git remote dockyard removed" in result.stderr
    assert remotes(alice) == {}
    assert "Couldn't find that app" in alice.fails("apps:info", "-a", name)


def test_destroy_by_argument_and_by_app_option(alice: Cli) -> None:
    first, second = app_name(), app_name()
    alice.create_app(first)
    alice.create_app(second)
    alice.run("apps:destroy", first, "--confirm", first)
    alice.run("apps:destroy", "-a", second, "--confirm", second)
    assert json.loads(alice.out("apps", "--json")) == []


def test_only_the_owner_destroys(users: Users) -> None:
    alice, bob = users.new(), users.new()
    name = alice.create_app()
    alice.share(name, bob.email)
    error = bob.fails("apps:destroy", "-a", name, "--confirm", name)
    assert f"only the owner of {name} ({alice.email}) can destroy it" in error


def test_bad_and_taken_names(alice: Cli, app: str) -> None:
    error = alice.fails("apps:create", "Bad_Name")
    assert "Creating ⬢ Bad_Name... !" in error
    assert "Name 'Bad_Name' is invalid" in error
    assert f"Name {app} is already taken" in alice.fails("apps:create", app)


def test_unknown_app(alice: Cli) -> None:
    error = alice.fails("apps:info", "-a", "no-such-app")
    assert "Couldn't find that app: no-such-app." in error


def test_another_users_app_is_not_found(users: Users, app: str) -> None:
    error = users.new().fails("config", "-a", app)
    assert f"Couldn't find that app: {app}." in error


def test_listings_follow_range_paging(users: Users) -> None:
    """More apps than one page (200) holds: the CLI asks for the next pages."""
    bob = users.new()
    prefix = app_name("p")
    with users.database.transaction() as session:
        owner = accounts.get_user(session, bob.email)
        for index in range(205):
            apps.create(session, owner, f"{prefix}-{index:03d}")
    listed = json.loads(bob.out("apps", "--json"))
    assert len(listed) == 205
    assert len({a["name"] for a in listed}) == 205
