"""git over SSH, end to end: the real ``ssh`` and ``git`` clients against a real server."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import httpx
import pytest

from conftest import (
    GIT_ENV,
    Server,
    api_client,
    free_port,
    git,
    start_server,
    stop_server,
    wait_until,
)
from dockyard.receive.ssh import host_key

pytestmark = pytest.mark.e2e


@dataclass
class SSHServer:
    server: Server
    port: int


@dataclass
class Pusher:
    """A user with a registered SSH key, pushing with the real git client over SSH."""

    ssh: SSHServer
    token: str
    key: Path
    client: httpx.Client

    def url(self, app: str) -> str:
        return f"ssh://git@127.0.0.1:{self.ssh.port}/{app}.git"

    def ssh_options(self) -> list[str]:
        return ssh_options(self.key, self.ssh.port)

    def git(self, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env={
                **os.environ,
                **GIT_ENV,
                "GIT_SSH_COMMAND": shlex.join(["ssh", *self.ssh_options()]),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=300,
            check=False,
        )

    def run(self, *remote: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """``ssh git@host REMOTE...``; stdout and stderr kept apart."""
        return subprocess.run(
            ["ssh", *self.ssh_options(), *options, "git@127.0.0.1", *remote],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def create(self, name: str) -> str:
        self.create_id(name)
        return name

    def create_id(self, name: str) -> str:
        reply = self.client.post("/apps", json={"name": name})
        assert reply.status_code == 201, reply.text
        return str(reply.json()["id"])

    def releases(self, app: str) -> list[dict[str, Any]]:
        reply = self.client.get(f"/apps/{app}/releases")
        assert reply.status_code in (200, 206), reply.text
        found: list[dict[str, Any]] = reply.json()
        return found


def ssh_options(key: Path, port: int) -> list[str]:
    return [
        "-i", str(key),
        "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "LogLevel=ERROR",
        "-p", str(port),
    ]  # fmt: skip


def make_key(directory: Path, name: str = "id") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@tests", "-f", str(key)],
        check=True,
        capture_output=True,
    )
    return key


def stderr_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.strip()]


def remote_lines(output: str) -> list[str]:
    return [
        line.removeprefix("remote: ").rstrip()
        for line in output.splitlines()
        if line.startswith("remote:")
    ]


def shell_app(directory: Path, start: str = "#!/bin/sh\nexec echo hello\n") -> Path:
    """A Procfile-only app, committed on main."""
    directory.mkdir(parents=True)
    (directory / "Procfile").write_text("web: ./start.sh\n")
    (directory / "start.sh").write_text(start)
    (directory / "start.sh").chmod(0o755)
    git("init", "--quiet", "--initial-branch=main", cwd=directory)
    git("add", "--all", cwd=directory)
    git("commit", "--quiet", "--message", "A shell app", cwd=directory)
    return directory


@pytest.fixture(scope="module")
def ssh_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    port = free_port()
    running = start_server(
        tmp_path_factory.mktemp("ssh") / "data", {"DOCKYARD_SSH_PORT": str(port)}
    )
    yield SSHServer(running, port)
    stop_server(running)


def new_pusher(ssh: SSHServer, email: str, keys: Path) -> Pusher:
    token = ssh.server.create_user(email)
    client = api_client(ssh.server, token)
    key = make_key(keys)
    reply = client.post("/account/keys", json={"public_key": key.with_suffix(".pub").read_text()})
    assert reply.status_code == 201, reply.text
    return Pusher(ssh, token, key, client)


@pytest.fixture(scope="module")
def owner(ssh_server: SSHServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pusher]:
    pusher = new_pusher(ssh_server, "owner@example.com", tmp_path_factory.mktemp("owner-key"))
    yield pusher
    pusher.client.close()


@pytest.fixture(scope="module")
def stranger(ssh_server: SSHServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pusher]:
    pusher = new_pusher(ssh_server, "stranger@example.com", tmp_path_factory.mktemp("stranger-key"))
    yield pusher
    pusher.client.close()


def test_push_builds_and_releases_then_clone_and_fetch(owner: Pusher, tmp_path: Path) -> None:
    app = owner.create("ssh-app")
    repo = shell_app(tmp_path / "repo")
    sha = git("rev-parse", "HEAD", cwd=repo).stdout.strip()

    pushed = owner.git("push", owner.url(app), "main", cwd=repo)

    assert pushed.returncode == 0, pushed.stdout
    lines = remote_lines(pushed.stdout)
    expected = [
        "-----> Procfile app detected",
        "       Procfile declares types -> web",
        "       Released v2",
    ]
    positions = [next(i for i, line in enumerate(lines) if line == want) for want in expected]
    assert positions == sorted(positions), lines
    release = next(r for r in owner.releases(app) if r["current"])
    assert release["version"] == 2
    assert release["description"] == f"Deploy {sha[:7]}"

    # upload-pack: a clone over SSH gets the pushed commit, and a fetch gets the next one.
    cloned = owner.git("clone", "--quiet", owner.url(app), str(tmp_path / "clone"), cwd=tmp_path)
    assert cloned.returncode == 0, cloned.stdout
    assert git("rev-parse", "HEAD", cwd=tmp_path / "clone").stdout.strip() == sha
    (repo / "README").write_text("second\n")
    git("add", "README", cwd=repo)
    git("commit", "--quiet", "--message", "Second", cwd=repo)
    second = git("rev-parse", "HEAD", cwd=repo).stdout.strip()
    assert owner.git("push", owner.url(app), "main", cwd=repo).returncode == 0
    fetched = owner.git("fetch", "--quiet", "origin", cwd=tmp_path / "clone")
    assert fetched.returncode == 0, fetched.stdout
    assert git("rev-parse", "origin/main", cwd=tmp_path / "clone").stdout.strip() == second
    assert next(r for r in owner.releases(app) if r["current"])["version"] == 3


def test_failed_build_rejects_the_push(owner: Pusher, tmp_path: Path) -> None:
    app = owner.create("ssh-fails")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "README.md").write_text("# nothing to run\n")
    git("init", "--quiet", "--initial-branch=main", cwd=repo)
    git("add", "--all", cwd=repo)
    git("commit", "--quiet", "--message", "Nothing to detect", cwd=repo)

    pushed = owner.git("push", owner.url(app), "main", cwd=repo)

    assert pushed.returncode != 0
    assert any(
        "No default language could be detected" in line for line in remote_lines(pushed.stdout)
    )
    assert "[remote rejected] main -> main (pre-receive hook declined)" in pushed.stdout
    assert [r["version"] for r in owner.releases(app)] == [1]
    listed = owner.git("ls-remote", owner.url(app), cwd=repo)
    assert listed.returncode == 0, listed.stdout
    assert listed.stdout.strip() == "", "the rejected commit is not kept"


def test_unregistered_key_and_passwords_are_refused(
    ssh_server: SSHServer, owner: Pusher, tmp_path: Path
) -> None:
    app = owner.create("ssh-guarded")
    unknown = Pusher(ssh_server, "", make_key(tmp_path / "keys"), owner.client)

    refused = unknown.run("git-receive-pack", f"'/{app}.git'")
    assert refused.returncode == 255
    assert "Permission denied (publickey)" in refused.stderr, "only public keys are offered"
    pushed = unknown.git("push", unknown.url(app), "main", cwd=shell_app(tmp_path / "repo"))
    assert pushed.returncode != 0
    assert "Permission denied (publickey)" in pushed.stdout

    password = owner.run(
        "git-upload-pack",
        f"'/{app}.git'",
        options=(
            "-o", "PubkeyAuthentication=no",
            "-o", "PreferredAuthentications=password,keyboard-interactive",
        ),
    )  # fmt: skip
    assert password.returncode == 255
    assert "Permission denied (publickey)" in password.stderr
    assert [r["version"] for r in owner.releases(app)] == [1]


def test_user_without_access_sees_the_same_refusal_as_for_a_missing_app(
    owner: Pusher, stranger: Pusher, tmp_path: Path
) -> None:
    app = owner.create("ssh-private")

    denied = stranger.run("git-receive-pack", f"'/{app}.git'")
    missing = stranger.run("git-receive-pack", "'/no-such-app.git'")

    assert denied.returncode == missing.returncode == 1
    assert denied.stdout == missing.stdout == ""
    (line,) = stderr_lines(denied)
    assert line.startswith(f"Couldn't find that app: {app}."), line
    (other,) = stderr_lines(missing)
    assert other.replace("no-such-app", app) == line, "the app's existence is not revealed"

    pushed = stranger.git("push", stranger.url(app), "main", cwd=shell_app(tmp_path / "repo"))
    assert pushed.returncode != 0
    assert f"Couldn't find that app: {app}." in pushed.stdout
    assert [r["version"] for r in owner.releases(app)] == [1]

    # Made a collaborator, the same key may fetch.
    added = owner.client.post(f"/apps/{app}/collaborators", json={"user": "stranger@example.com"})
    assert added.status_code == 201, added.text
    assert stranger.git("ls-remote", stranger.url(app), cwd=tmp_path).returncode == 0


@pytest.mark.parametrize(
    ("remote", "options", "wanted"),
    [
        (("ls",), (), "only serves git-receive-pack and git-upload-pack"),
        (("git-upload-pack", "'/a.git'", "extra"), (), "only serves git-receive-pack"),
        (("git-upload-pack", "'../etc/passwd'"), (), "is not an app's git repository"),
        ((), ("-T",), "does not provide shell access"),
        ((), ("-tt",), "does not provide shell access"),
    ],
    ids=["command", "extra-argument", "path", "shell", "shell-with-pty"],
)
def test_anything_but_git_is_refused_with_one_line(
    owner: Pusher, remote: tuple[str, ...], options: tuple[str, ...], wanted: str
) -> None:
    done = owner.run(*remote, options=options)

    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = stderr_lines(done)
    assert wanted in line


def test_host_key_is_made_once_and_a_stop_ends_open_sessions(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "data"
    first = SSHServer(start_server(data_dir, {"DOCKYARD_SSH_PORT": str(port)}), port)
    try:
        path = data_dir / "ssh_host_ed25519_key"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        served = host_keys(port)
        assert served == [public_key(path)]
        (tmp_path / "other").mkdir()

        # A fetch left waiting for its client (stdin open) when the server is stopped.
        pusher = new_pusher(first, "waiting@example.com", tmp_path / "keys")
        app_id = pusher.create_id("ssh-stopped")
        pusher.client.close()
        waiting = subprocess.Popen(
            ["ssh", *pusher.ssh_options(), "git@127.0.0.1", "git-upload-pack 'ssh-stopped'"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert waiting.stdout is not None
        assert waiting.stdout.read(4).isalnum(), "upload-pack advertised its refs"
        assert processes_of(f"{app_id}.git")
    finally:
        stop_server(first.server)
    assert first.server.process.returncode == 0, "the server stops cleanly"
    assert waiting.wait(timeout=10) != 0
    waiting.stdout.close()
    assert waiting.stdin is not None
    waiting.stdin.close()
    assert not processes_of(f"{app_id}.git"), "git-upload-pack was ended with the server"
    # What the next start serves: the same key (the server reads it with this function).
    assert public_key_of(host_key(data_dir)) == served[0]
    assert public_key_of(host_key(tmp_path / "other")) != served[0]


def host_keys(port: int) -> list[str]:
    done = subprocess.run(
        ["ssh-keyscan", "-T", "10", "-t", "ed25519", "-p", str(port), "127.0.0.1"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return [" ".join(line.split()[1:3]) for line in done.stdout.splitlines() if line.strip()]


def public_key_of(key: asyncssh.SSHKey) -> str:
    return " ".join(key.export_public_key().decode().split()[:2])


def public_key(private: Path) -> str:
    done = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(private)], capture_output=True, text=True, check=True
    )
    return " ".join(done.stdout.split()[:2])


def test_client_hanging_up_ends_the_push_and_its_build(owner: Pusher, tmp_path: Path) -> None:
    app = "ssh-hangup"
    app_id = owner.create_id(app)
    buildpack = tmp_path / "hangs"
    (buildpack / "bin").mkdir(parents=True)
    for name, script in {
        "detect": "#!/bin/sh\necho Hangs\n",
        "compile": "#!/bin/sh\necho '-----> Compiling forever'\nexec sleep 600\n",
    }.items():
        (buildpack / "bin" / name).write_text(script)
        (buildpack / "bin" / name).chmod(0o755)
    installed = owner.client.put(
        f"/apps/{app}/buildpack-installations", json={"updates": [{"buildpack": str(buildpack)}]}
    )
    assert installed.status_code == 200, installed.text
    repo = shell_app(tmp_path / "repo")

    output: list[str] = []
    push = subprocess.Popen(
        ["git", "push", owner.url(app), "main"],
        cwd=repo,
        env={**os.environ, **GIT_ENV, "GIT_SSH_COMMAND": shlex.join(["ssh", *owner.ssh_options()])},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # so that git and its ssh can be hung up together
    )
    assert push.stdout is not None
    reader = threading.Thread(target=lambda: output.extend(push.stdout or ()), daemon=True)
    reader.start()
    try:
        wait_until(lambda: "remote: -----> Compiling forever" in "".join(output), timeout=30)
    except AssertionError:
        raise AssertionError("".join(output)) from None
    finally:
        os.killpg(push.pid, signal.SIGKILL)
        push.wait()
        reader.join(timeout=10)
        push.stdout.close()

    def build_status() -> str:
        (build,) = owner.client.get(f"/apps/{app}/builds").json()
        return str(build["status"])

    wait_until(lambda: build_status() == "failed", timeout=30)
    wait_until(lambda: not processes_of(f"{app_id}.git"), timeout=10)
    assert [r["version"] for r in owner.releases(app)] == [1]


def processes_of(repo: str) -> list[str]:
    """Processes that run in, or on, this bare repository (git-receive-pack and its hook)."""
    found = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and any(
                repo.encode() in (proc / part).read_bytes() for part in ("cmdline", "environ")
            ):
                found.append(proc.name)
    return found
