"""``builds``, ``builds:info``, ``builds:output``, ``builds:cache:purge`` after real pushes,
and ``buildpacks`` with ``:add``, ``:set``, ``:remove``, ``:clear``."""

from __future__ import annotations

import io
import json
import queue
import re
import subprocess
import tarfile
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from cli.runner import DOCKYARD, Cli, Users
from cli.test_git_remote import AUTHOR, procfile_app, push, remote_lines
from conftest import Server
from dockyard.store import Database


@dataclass
class Deployed:
    """An app pushed twice through its `dockyard` remote: a good build, then a failed one."""

    cli: Cli
    app: str
    good: str
    bad: str
    pushed: list[str]

    def builds(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(self.cli.out("builds", "--json"))
        return found


@pytest.fixture(scope="module")
def deployed(server: Server, store: Database, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    cli = Users(server, store, tmp_path_factory.mktemp("builds")).new(logged_in=False)
    cli.run("login", "--token", cli.token)
    app = cli.create_app()
    good = procfile_app(cli)
    cli.run("git:remote", "-a", app)
    first = push(cli, "dockyard", "main")
    assert first.returncode == 0, first.stdout

    (cli.cwd / "Procfile").write_text("web: ./start.sh\nweb: ./other.sh\n")
    cli.git(*AUTHOR, "commit", "--quiet", "--all", "--message", "Two web types")
    bad = cli.git("rev-parse", "HEAD").strip()
    second = push(cli, "dockyard", "main")
    assert second.returncode != 0, second.stdout
    return Deployed(cli, app, good, bad, remote_lines(first.stdout))


def test_builds_newest_first(deployed: Deployed) -> None:
    cli, app = deployed.cli, deployed.app
    lines = cli.out("builds").splitlines()  # the app comes from the `dockyard` remote
    assert lines[:2] == [f"=== {app} Builds", ""]
    email = re.escape(cli.email)
    date = r"\d{4}/\d\d/\d\d \d\d:\d\d:\d\d [+-]\d{4}"
    assert re.fullmatch(
        rf"[0-9a-f]{{8}}\s+failed\s+{deployed.bad[:7]}\s+{email}\s+{date}.*", lines[2]
    )
    assert re.fullmatch(
        rf"[0-9a-f]{{8}}\s+succeeded\s+{deployed.good[:7]}\s+{email}\s+{date}.*", lines[3]
    )
    assert len(lines) == 4

    builds = deployed.builds()
    assert [b["status"] for b in builds] == ["failed", "succeeded"]
    assert [b["source_blob"]["version"] for b in builds] == [deployed.bad, deployed.good]
    assert lines[2].startswith(str(builds[0]["id"])[:8])
    newest = json.loads(cli.out("builds", "-n", "1", "--json", "-a", app))
    assert [b["id"] for b in newest] == [builds[0]["id"]]


def test_builds_info(deployed: Deployed) -> None:
    cli = deployed.cli
    failed, succeeded = deployed.builds()

    latest = cli.out("builds:info")
    assert latest.startswith(f"=== Build {failed['id']}\n")
    assert re.search(r"^Status:\s+failed$", latest, re.MULTILINE)
    assert re.search(
        r"^Failure:\s+Procfile line 2: process type web is declared twice", latest, re.M
    )
    assert "Release:" not in latest

    shown = cli.out("builds:info", str(succeeded["id"])[:8])
    assert shown.startswith(f"=== Build {succeeded['id']}\n")
    assert re.search(r"^Status:\s+succeeded$", shown, re.MULTILINE)
    assert re.search(rf"^Commit:\s+{deployed.good}$", shown, re.MULTILINE)
    assert re.search(r"^Release:\s+v2$", shown, re.MULTILINE)
    assert re.search(rf"^Slug:\s+{succeeded['slug']['id']}$", shown, re.MULTILINE)
    assert re.search(r"^Buildpacks:\s+detected at build time$", shown, re.MULTILINE)
    assert re.search(rf"^By:\s+{re.escape(cli.email)}$", shown, re.MULTILINE)

    as_json = json.loads(cli.out("builds:info", str(succeeded["id"]), "--json"))
    assert (as_json["id"], as_json["status"]) == (succeeded["id"], "succeeded")


def test_builds_output_replays_the_push(deployed: Deployed) -> None:
    cli = deployed.cli
    failed, succeeded = deployed.builds()

    good = cli.out("builds:output", str(succeeded["id"])[:8]).splitlines()
    assert "       Procfile declares types -> web" in good
    assert "       Released v2" in good
    # The same lines the pusher saw as `remote:` lines, in the same order.
    assert [line for line in deployed.pushed if line in good] == good

    bad = cli.out("builds:output")
    assert "process type web is declared twice" in bad
    assert "Push rejected; the current release is unchanged." in bad
    assert bad == cli.out("builds:output", str(failed["id"]))


WAITING_COMPILE = """#!/bin/sh
echo "-----> Waiting for the test"
# Bounded, so that a test that dies first cannot leave the build running for long.
i=0
while [ ! -e "$2/go" ] && [ "$i" -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
echo "       the test said go"
"""


def _read_lines(stream: IO[str] | None, lines: queue.Queue[str | None]) -> None:
    """Pass each line of ``stream`` on to ``lines``, then ``None`` at its end."""
    for line in stream or ():
        lines.put(line)
    lines.put(None)


def test_builds_output_follows_a_running_build(alice: Cli, app: str, tmp_path: Path) -> None:
    """The build cannot end before the test creates ``go`` in its cache, so the first line
    reaching ``builds:output`` proves it streams a running build; it then runs to the end."""
    pack = tmp_path / "waiting"
    (pack / "bin").mkdir(parents=True)
    (pack / "bin" / "detect").write_text("#!/bin/sh\necho Waiting\n")
    (pack / "bin" / "compile").write_text(WAITING_COMPILE)
    for script in (pack / "bin").iterdir():
        script.chmod(0o755)
    alice.run("buildpacks:set", str(pack), "-a", app)

    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w:gz") as tar:
        procfile = b"web: ./start.sh\n"
        info = tarfile.TarInfo("Procfile")
        info.size = len(procfile)
        tar.addfile(info, io.BytesIO(procfile))
    with alice.api() as api:
        source = api.post("/sources").json()["source_blob"]
        api.put(source["put_url"], content=archive.getvalue()).raise_for_status()
        created = api.post(f"/apps/{app}/builds", json={"source_blob": {"url": source["get_url"]}})
        created.raise_for_status()
        build = created.json()
        app_id = api.get(f"/apps/{app}").json()["id"]

    seen: list[str] = []
    with subprocess.Popen(
        [*DOCKYARD, "builds:output", "-a", app],
        cwd=alice.cwd,
        env=alice.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    ) as follower:
        lines: queue.Queue[str | None] = queue.Queue()
        reader = threading.Thread(target=_read_lines, args=(follower.stdout, lines))
        reader.start()
        try:
            while "-----> Waiting for the test\n" not in seen:
                line = lines.get(timeout=60)
                assert line is not None, f"builds:output ended early: {seen}"
                seen.append(line)
            with alice.api() as api:
                assert api.get(f"/apps/{app}/builds/{build['id']}").json()["status"] == "pending"
            (Path(alice.server.data_dir) / "cache" / app_id / "go").touch()
            assert follower.wait(timeout=60) == 0
        finally:
            if follower.poll() is None:
                follower.kill()
            reader.join(timeout=10)
    while (line := lines.get(timeout=10)) is not None:
        seen.append(line)
    assert "       the test said go\n" in seen
    assert seen[-3:-1] == ["-----> Launching...\n", "       Released v2\n"]


def test_builds_failures(deployed: Deployed, alice: Cli, app: str) -> None:
    cli = deployed.cli
    unknown = str(uuid.uuid4())
    assert f"Couldn't find build {unknown}" in cli.fails("builds:info", unknown)
    assert f"Couldn't find build {unknown}" in cli.fails("builds:output", unknown)
    assert "'v2' is not a build id" in cli.fails("builds:info", "v2")
    assert "Couldn't find build 0000 of" in cli.fails("builds:info", "0000")

    result = alice.run("builds", "-a", app)
    assert result.stdout == ""
    assert f"{app} has no builds yet" in result.stderr
    assert json.loads(alice.out("builds", "--json", "-a", app)) == []
    assert f"{app} has no builds yet" in alice.fails("builds:info", "-a", app)
    assert f"{app} has no builds yet" in alice.fails("builds:output", "-a", app)
    # Another user's builds are not alice's to see.
    assert f"Couldn't find that app: {deployed.app}" in alice.fails("builds", "-a", deployed.app)


def test_cache_purge_needs_confirmation(deployed: Deployed) -> None:
    cli, app = deployed.cli, deployed.app
    with cli.api() as api:
        app_id = api.get(f"/apps/{app}").json()["id"]
    cache = Path(cli.server.data_dir) / "cache" / app_id
    assert cache.is_dir(), "the build made the app's cache directory"

    error = cli.fails("builds:cache:purge")
    assert f"re-run with --confirm {app}" in error
    assert "Confirmation 'other' did not match" in cli.fails(
        "builds:cache:purge", "--confirm", "other"
    )
    assert cache.is_dir()

    result = cli.run("builds:cache:purge", "--confirm", app)
    assert f"Purging build cache for ⬢ {app}... done" in result.stderr
    assert not cache.exists()


# ------------------------------------------------------------------------------ buildpacks

APT = "https://github.com/heroku/heroku-buildpack-apt"
LOCAL = "/srv/buildpacks/mine"


def said(done: str, app: str, *urls: str) -> str:
    these = "this buildpack" if len(urls) == 1 else "these buildpacks"
    listed = "".join(f"  {n}. {url}\n" for n, url in enumerate(urls, start=1))
    return (
        f"{done} Next release on {app} will use:\n{listed}"
        f"Run `git push dockyard main` to create a new release using {these}.\n"
    )


def installed(cli: Cli, app: str) -> list[str]:
    found = json.loads(cli.out("buildpacks", "--json", "-a", app))
    assert [i["ordinal"] for i in found] == list(range(len(found)))
    return [i["buildpack"]["url"] for i in found]


def test_buildpacks_round_trip(alice: Cli, app: str) -> None:
    result = alice.run("buildpacks", "-a", app)
    assert result.stdout == ""
    assert "has no buildpacks set; they are detected at build time" in result.stderr

    out = alice.out("buildpacks:add", "builtin:python", "-a", app)
    assert out == said("Buildpack added.", app, "builtin:python")
    out = alice.out("buildpacks:add", APT, "-a", app)
    assert out == said("Buildpack added.", app, "builtin:python", APT)
    out = alice.out("buildpacks:add", "--index", "1", LOCAL, "-a", app)
    assert out == said("Buildpack added.", app, LOCAL, "builtin:python", APT)
    assert installed(alice, app) == [LOCAL, "builtin:python", APT]
    listed = alice.out("buildpacks", "-a", app)
    assert listed == f"=== {app} Buildpack URLs\n\n  1. {LOCAL}\n  2. builtin:python\n  3. {APT}\n"

    out = alice.out("buildpacks:set", "builtin:nodejs", "-a", app)
    assert out == said("Buildpack set.", app, "builtin:nodejs", "builtin:python", APT)
    alice.run("buildpacks:set", "-i", "3", "builtin:static", "-a", app)
    assert installed(alice, app) == ["builtin:nodejs", "builtin:python", "builtin:static"]

    out = alice.out("buildpacks:remove", "--index", "2", "-a", app)
    assert out == said("Buildpack removed.", app, "builtin:nodejs", "builtin:static")
    out = alice.out("buildpacks:remove", "builtin:nodejs", "-a", app)
    assert out == said("Buildpack removed.", app, "builtin:static")
    assert alice.out("buildpacks", "-a", app) == f"=== {app} Buildpack URL\n\n  1. builtin:static\n"

    out = alice.out("buildpacks:clear", "-a", app)
    assert out == f"Buildpacks cleared. Next release on {app} will detect buildpacks normally.\n"
    assert installed(alice, app) == []
    # buildpacks:set on an app with none sets its only one.
    alice.run("buildpacks:set", APT, "-a", app)
    out = alice.out("buildpacks:remove", APT, "-a", app)
    assert out == f"Buildpack removed. Next release on {app} will detect buildpacks normally.\n"


def test_buildpacks_bad_input(alice: Cli, app: str) -> None:
    assert f"{app} has no buildpacks set; there is nothing to remove" in alice.fails(
        "buildpacks:remove", "--index", "1", "-a", app
    )
    alice.run("buildpacks:add", "builtin:python", "-a", app)
    alice.run("buildpacks:add", APT, "-a", app)

    assert f"The buildpack {APT} is already set on {app} (as number 2)" in alice.fails(
        "buildpacks:add", APT, "-a", app
    )
    assert "already set" in alice.fails("buildpacks:set", "-i", "2", "builtin:python", "-a", app)
    assert f"Invalid index 9: {app} has 2 buildpacks; choose a value between 1 and 2." in (
        alice.fails("buildpacks:remove", "--index", "9", "-a", app)
    )
    assert "choose a value between 1 and 3" in alice.fails(
        "buildpacks:add", "-i", "5", LOCAL, "-a", app
    )
    assert "choose a value between 1 and 2" in alice.fails(
        "buildpacks:set", "-i", "3", LOCAL, "-a", app
    )
    assert "'--index': 0 is not in the range x>=1" in alice.fails(
        "buildpacks:add", "-i", "0", LOCAL, "-a", app
    )
    assert f"Buildpack {LOCAL} is not set on {app}; nothing was removed" in alice.fails(
        "buildpacks:remove", LOCAL, "-a", app
    )
    neither = "give either the buildpack's URL or --index N"
    assert neither in alice.fails("buildpacks:remove", "-a", app)
    assert neither in alice.fails("buildpacks:remove", APT, "-i", "1", "-a", app)
    assert "the buildpack URL is empty" in alice.fails("buildpacks:add", " ", "-a", app)
    # The API's own check, and its message.
    assert "buildpack 'ftp://example.com/bp' is not a git URL" in alice.fails(
        "buildpacks:add", "ftp://example.com/bp", "-a", app
    )
    assert installed(alice, app) == ["builtin:python", APT]


def test_buildpacks_of_another_users_app(users: Users) -> None:
    alice, bob = users.new(), users.new()
    theirs = bob.create_app()
    assert f"Couldn't find that app: {theirs}" in alice.fails("buildpacks:clear", "-a", theirs)
    assert f"Couldn't find that app: {theirs}" in alice.fails("buildpacks", "-a", theirs)
