"""``git:remote``: the remote it adds is one that ``git push`` really deploys through."""

from __future__ import annotations

import subprocess

from cli.runner import Cli, Users, app_name

AUTHOR = ("-c", "user.name=Dockyard Tests", "-c", "user.email=tests@example.com")


def procfile_app(cli: Cli) -> str:
    """A tiny app in the user's working directory, committed on main; return the commit."""
    cli.git("init", "--quiet", "--initial-branch=main")
    (cli.cwd / "Procfile").write_text("web: ./start.sh\n")
    start = cli.cwd / "start.sh"
    start.write_text('#!/bin/sh\nexec python3 -m http.server "$PORT"\n')
    start.chmod(0o755)
    cli.git("add", "--all")
    cli.git(*AUTHOR, "commit", "--quiet", "--message", "A tiny app")
    return cli.git("rev-parse", "HEAD").strip()


def push(cli: Cli, *args: str) -> subprocess.CompletedProcess[str]:
    """``git push ARGS`` as the user (credentials from their ~/.netrc); output merged."""
    return subprocess.run(
        ["git", "push", *args],
        cwd=cli.cwd,
        env={**cli.env, "GIT_TERMINAL_PROMPT": "0"},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
        check=False,
    )


def remote_lines(output: str) -> list[str]:
    """The ``remote:`` lines of a push, without the prefix and git's padding."""
    return [
        line.removeprefix("remote: ").rstrip()
        for line in output.splitlines()
        if line.startswith("remote: ")
    ]


def remote_url(cli: Cli, name: str = "dockyard") -> str:
    return cli.git("remote", "get-url", name).strip()


def test_http_remote_and_push_deploys(users: Users) -> None:
    # Logged in the way a user is, so that git finds the token in ~/.netrc.
    alice = users.new(logged_in=False)
    alice.run("login", "--token", alice.token)
    app = alice.create_app()
    commit = procfile_app(alice)

    result = alice.run("git:remote", "-a", app)
    url = f"{alice.server.url}/{app}.git"
    assert f"set git remote dockyard to {url}" in result.stderr
    assert remote_url(alice) == url

    pushed = push(alice, "dockyard", "main")
    assert pushed.returncode == 0, pushed.stdout
    lines = remote_lines(pushed.stdout)
    assert "       Procfile declares types -> web" in lines
    assert "       Released v2" in lines
    with alice.api() as api:
        release = api.get(f"/apps/{app}/releases/2").json()
    assert release["description"] == f"Deploy {commit[:7]}"
    assert release["current"] is True
    # The app is now found from the remote without -a.
    assert alice.out("releases", "-n", "1").startswith(f"=== {app} Releases - Current: v2")


def test_ssh_remote(alice: Cli, app: str) -> None:
    alice.git("init", "--quiet")
    alice.run("git:remote", "-a", app, "--ssh")
    assert remote_url(alice) == f"ssh://git@127.0.0.1:2222/{app}.git"

    # The port comes from --ssh-port or DOCKYARD_SSH_PORT; an existing remote is repointed.
    alice.run("git:remote", "-a", app, "--ssh", env={"DOCKYARD_SSH_PORT": "2022"})
    assert remote_url(alice) == f"ssh://git@127.0.0.1:2022/{app}.git"
    alice.run("git:remote", "-a", app, "--ssh", "--ssh-port", "2400", "-r", "prod")
    assert remote_url(alice, "prod") == f"ssh://git@127.0.0.1:2400/{app}.git"

    # Without -a, the app is the one the remote points at: switch `prod` back to HTTP.
    result = alice.run("git:remote", "-r", "prod")
    assert f"set git remote prod to {alice.server.url}/{app}.git" in result.stderr
    assert remote_url(alice, "prod") == f"{alice.server.url}/{app}.git"
    assert remote_url(alice) == f"ssh://git@127.0.0.1:2022/{app}.git"


def test_git_remote_failures(alice: Cli, app: str) -> None:
    assert "not in a git repository" in alice.fails("git:remote", "-a", app)
    alice.git("init", "--quiet")
    error = alice.fails("git:remote")
    assert "no app specified and git remote 'dockyard' does not exist" in error
    assert "-a APP" in error
    missing = app_name("gone")
    assert f"Couldn't find that app: {missing}" in alice.fails("git:remote", "-a", missing)
    bad_port = alice.run(
        "git:remote", "-a", app, "--ssh", ok=False, env={"DOCKYARD_SSH_PORT": "ssh"}
    )
    assert "--ssh-port" in bad_port.stderr
    assert "'ssh' is not a valid integer" in bad_port.stderr
    # Nothing was written by the failed attempts.
    assert alice.git("remote").strip() == ""


def test_another_users_app_is_refused(users: Users) -> None:
    alice, bob = users.new(), users.new()
    theirs = bob.create_app()
    alice.git("init", "--quiet")
    assert f"Couldn't find that app: {theirs}" in alice.fails("git:remote", "-a", theirs)
    assert alice.git("remote").strip() == ""
