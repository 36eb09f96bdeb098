"""One-off dynos end to end: `dockyard run` and `run:detached` against a real server.

The app is pushed once; each test runs the real CLI as a subprocess, through pipes or through
a pseudo-terminal as a person's terminal would be.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from conftest import APPS, DOCKYARD, Server, make_repo, start_server, stop_server, wait_until
from docker_support import dyno_records, open_node_runtime
from e2e.deploy import Deployer, deployer_for, dynos, scale, settle

Json = dict[str, Any]
RUNNING = re.compile(
    r"^Running (?P<command>.*) on .*\.\.\. (?P<how>up|done), (?P<name>run\.\d{4}) "
    r"\((?P<size>[\w-]+)\)$",
    re.MULTILINE,
)


async def _stop_leftovers(data_dir: Path) -> None:
    """Dynos outlive the server by design; the test stops those it left."""
    runtime = await open_node_runtime(data_dir)
    try:
        for dyno in await runtime.list():
            await runtime.stop(dyno.id, grace=2)
    finally:
        await runtime.close()


@pytest.fixture(scope="module")
def run_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("run") / "data"
    running = start_server(data_dir)
    try:
        yield running
    finally:
        stop_server(running)
        asyncio.run(_stop_leftovers(data_dir))


@pytest.fixture(scope="module")
def deployer(run_server: Server) -> Iterator[Deployer]:
    with deployer_for(run_server, "runner@example.com") as deployer:
        yield deployer


@pytest.fixture(scope="module")
def app(deployer: Deployer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The one-off sample app, deployed, with its web dyno up."""
    name = deployer.create("one-off")
    repo = make_repo(APPS / "one-off", tmp_path_factory.mktemp("one-off") / "repo")
    pushed = deployer.push(repo, name)
    assert pushed.status == 0, pushed.output
    settle(deployer, name, {"web.1": deployer.current(name)["version"]})
    return name


@pytest.fixture(scope="module")
def env(run_server: Server, deployer: Deployer) -> dict[str, str]:
    return {
        **os.environ,
        "DOCKYARD_API_URL": run_server.url,
        "DOCKYARD_API_KEY": deployer.token,
        "TERM": "xterm",
    }


def cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*DOCKYARD, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120
    )


def started(stderr: str) -> re.Match[str]:
    found = RUNNING.search(stderr)
    assert found is not None, stderr
    return found


def web_dyno(deployer: Deployer, app: str) -> Json:
    (web,) = [d for d in dynos(deployer, app) if d["name"] == "web.1"]
    assert web["state"] == "up"
    return web


def dyno_record(data_dir: Path, name: str) -> tuple[Path, Json]:
    """The runtime's directory and record of the (only) dyno called ``name``."""
    found = [
        (path.parent, json.loads(path.read_text()))
        for path in dyno_records(data_dir)
        if json.loads(path.read_text())["name"] == name
    ]
    assert len(found) == 1, found
    return found[0]


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_run_x_exits_with_the_dyno_status(app: str, env: dict[str, str]) -> None:
    done = cli(env, "run", "-x", "-a", app, "--", "python3", "-c", "import sys; sys.exit(3)")
    assert done.returncode == 3, done.stderr
    found = started(done.stderr)
    assert found["command"] == 'python3 -c "import sys; sys.exit(3)"'
    assert (found["how"], found["size"]) == ("up", "Standard-1X")
    assert cli(env, "run", "-x", "-a", app, "--", "bash", "-c", "exit 4").returncode == 4
    # Without -x the command exits 0, as Heroku's does.
    done = cli(env, "run", "-a", app, "--", "bash", "-c", "exit 3")
    assert done.returncode == 0, done.stderr


def test_run_through_pipes_with_env_and_size(app: str, env: dict[str, str]) -> None:
    script = 'test -t 0 || echo no-tty; tr a-z A-Z; echo "$DYNO $FOO $BAZ" >&2'
    done = cli(
        env,
        "run",
        "-e",
        "FOO=bar baz;BAZ=2",
        "-s",
        "standard-2x",
        "-a",
        app,
        "--",
        "bash",
        "-c",
        script,
        stdin="hello\nworld\n",
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no-tty\nHELLO\nWORLD\n"
    found = started(done.stderr)
    assert found["size"] == "Standard-2X"
    assert f"{found['name']} bar baz 2\n" in done.stderr


def test_a_procfile_type_runs_its_command(app: str, env: dict[str, str]) -> None:
    done = cli(env, "run", "-a", app, "greet", "the world")
    assert done.returncode == 0, done.stderr
    name = started(done.stderr)["name"]
    assert done.stdout == f"greetings from {name}: the world\n"


def test_a_command_that_does_not_exist(app: str, deployer: Deployer, env: dict[str, str]) -> None:
    web = web_dyno(deployer, app)
    done = cli(env, "run", "-x", "-a", app, "--", "no-such-command", "--flag")
    assert done.returncode == 127
    assert "no-such-command: command not found" in done.stderr
    # The app's other dynos carry on as they were.
    assert web_dyno(deployer, app)["id"] == web["id"]


class Terminal:
    """The CLI on a pseudo-terminal, as a person runs it: keys in, screen out."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child: size the terminal, then become the CLI
            fcntl.ioctl(0, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
            os.execvpe(argv[0], argv, env)  # noqa: S606 - the CLI's argv, no shell
        self.pid, self.fd = pid, fd
        self.screen = ""

    def expect(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        """Read until ``pattern`` shows in what the terminal printed since the last match."""
        deadline = time.monotonic() + timeout
        while (found := re.search(pattern, self.screen)) is None:
            left = deadline - time.monotonic()
            assert left > 0, f"{pattern!r} did not show; the screen has:\n{self.screen}"
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    chunk = os.read(self.fd, 65536)
                except OSError:  # EIO: the CLI exited
                    chunk = b""
                assert chunk, f"the CLI exited before {pattern!r}; the screen has:\n{self.screen}"
                self.screen += chunk.decode(errors="replace")
        self.screen = self.screen[found.end() :]
        return found

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def resize(self, rows: int, columns: int) -> None:
        # As a terminal window does: the kernel sends the CLI SIGWINCH.
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))

    def wait(self, timeout: float = 30.0) -> int:
        deadline = time.monotonic() + timeout
        while True:
            with_status, status = os.waitpid(self.pid, os.WNOHANG)
            if with_status:
                os.close(self.fd)
                return os.waitstatus_to_exitcode(status)
            assert time.monotonic() < deadline, "the CLI did not exit"
            # Drain the screen so that the CLI never blocks on a full terminal.
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):
                    self.screen += os.read(self.fd, 65536).decode(errors="replace")

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.wait()


def test_an_interactive_run_on_a_terminal(
    app: str, deployer: Deployer, env: dict[str, str], run_server: Server
) -> None:
    terminal = Terminal([*DOCKYARD, "run", "-x", "-a", app, "bash"], env)
    try:
        name = terminal.expect(r"up, (run\.\d{4})")[1]
        terminal.expect(r"\$ ")  # bash's prompt
        terminal.type("echo hi-$((40+2))\r")
        terminal.expect(r"hi-42")
        terminal.type("tty; stty size\r")
        terminal.expect(r"/dev/pts/\d+\r\n24 80\r\n")
        # A new window size reaches the dyno's terminal (SIGWINCH, forwarded).
        terminal.resize(40, 120)
        for _ in range(50):
            terminal.type("stty size\r")
            if terminal.expect(r"(\d+ \d+)\r\n")[1] == "40 120":
                break
        else:
            raise AssertionError("the dyno's terminal was not resized")
        # Ctrl-C interrupts the dyno's foreground command, not the CLI.
        # The trap makes the interrupt land whenever it comes, even between the echo and
        # the sleep's exec; without it, a ^C in that gap would be lost and the test flaky.
        terminal.type(
            "bash -c 'trap \"exit 130\" INT; echo started-$((1+2)); sleep 60;"
            " echo not-$((0))-interrupted'\r"
        )
        terminal.expect(r"started-3")
        terminal.type("\x03")
        terminal.type("echo after-$((1+1))\r")
        terminal.expect(r"after-2", timeout=20)
        assert "not-0-interrupted" not in terminal.screen
        terminal.type("exit 7\r")
        assert terminal.wait() == 7
    finally:
        if not gone(terminal.pid):
            terminal.kill()
    wait_until(lambda: all(d["name"] != name for d in dynos(deployer, app)), timeout=30)


@pytest.mark.parametrize("on_a_terminal", [True, False], ids=["tty", "pipes"])
def test_the_dyno_ends_when_the_client_goes(
    app: str, deployer: Deployer, env: dict[str, str], run_server: Server, on_a_terminal: bool
) -> None:
    argv = [*DOCKYARD, "run", "-a", app, "--", "bash", "-c", "echo ready; exec sleep 600"]
    if on_a_terminal:
        terminal = Terminal(argv, env)
        name = terminal.expect(r"up, (run\.\d{4})")[1]
        terminal.expect("ready")
        _, record = dyno_record(run_server.data_dir, name)
        assert not gone(record["pid"])
        terminal.kill()
    else:
        pipes = subprocess.PIPE
        with subprocess.Popen(
            argv, env=env, stdin=pipes, stdout=pipes, stderr=pipes, text=True
        ) as client:
            assert client.stdout is not None
            assert client.stderr is not None
            assert client.stdout.readline() == "ready\n"
            name = started(client.stderr.readline())["name"]
            _, record = dyno_record(run_server.data_dir, name)
            assert not gone(record["pid"])
            client.kill()
    # The dyno is hung up and stopped: its processes end, and it is not listed any more.
    wait_until(lambda: gone(record["pid"]), timeout=30)
    wait_until(lambda: all(d["name"] != name for d in dynos(deployer, app)), timeout=30)


def test_run_detached_logs_its_output_and_is_never_restarted(
    app: str, deployer: Deployer, env: dict[str, str], run_server: Server
) -> None:
    done = cli(env, "run:detached", "-a", app, "--", "bash", "-c", "echo detached-$((6*7)) >&2")
    assert done.returncode == 0, done.stderr
    found = started(done.stderr)
    assert found["how"] == "done"
    name = found["name"]
    assert done.stdout == f"{name}\n"
    directory, _ = dyno_record(run_server.data_dir, name)

    def logged() -> list[str]:
        path = directory / "log"
        return [json.loads(line)["line"] for line in path.read_text().splitlines()]

    wait_until(lambda: directory.exists() and "detached-42" in logged(), timeout=30)
    wait_until(lambda: all(d["name"] != name for d in dynos(deployer, app)), timeout=30)

    # A one-off dyno that runs is listed as type run, not in the formation; stopped, it stays
    # stopped.
    done = cli(env, "run:detached", "-a", app, "--", "sleep", "600")
    sleeper = started(done.stderr)["name"]
    (listed,) = [d for d in dynos(deployer, app) if d["name"] == sleeper]
    assert (listed["type"], listed["state"], listed["command"]) == ("run", "up", "sleep 600")
    formation = deployer.client.get(f"/apps/{app}/formation").json()
    assert sorted(f["type"] for f in formation) == ["greet", "web"]
    stopped = cli(env, "ps:stop", sleeper, "-a", app)
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: all(d["name"] != sleeper for d in dynos(deployer, app)), timeout=30)
    # A reconciler pass (after a scale) starts the formation's dynos, and no one-off again.
    scale(deployer, app, "greet", 0)
    settle(deployer, app, {"web.1": deployer.current(app)["version"]})
    for one_off in (name, sleeper):
        dyno_record(run_server.data_dir, one_off)  # still the one run, not a new one


def test_the_api_runs_one_off_dynos_in_herokus_shape(app: str, deployer: Deployer) -> None:
    reply = deployer.client.post(
        f"/apps/{app}/dynos",
        json={"command": "greet api", "attach": False, "size": "basic", "time_to_live": 30},
    )
    assert reply.status_code == 201, reply.text
    dyno = reply.json()
    assert re.fullmatch(r"run\.\d{4}", dyno["name"])
    assert (dyno["type"], dyno["size"], dyno["attach_url"]) == ("run", "Basic", None)
    assert dyno["command"] == "bin/greet api"  # the Procfile's greet
    assert dyno["release"]["version"] == deployer.current(app)["version"]

    # time_to_live: the dyno is stopped once it has run that long.
    reply = deployer.client.post(
        f"/apps/{app}/dynos", json={"command": "sleep 600", "time_to_live": 1}
    )
    assert reply.status_code == 201, reply.text
    expiring = reply.json()["name"]
    wait_until(lambda: all(d["name"] != expiring for d in dynos(deployer, app)), timeout=30)

    # Attached: a WebSocket URL, for the caller only, once.
    reply = deployer.client.post(f"/apps/{app}/dynos", json={"command": "bash", "attach": True})
    assert reply.status_code == 201, reply.text
    url = reply.json()["attach_url"]
    pattern = rf"ws://127\.0\.0\.1:\d+/apps/{app}/dynos/run\.\d{{4}}/attach\?token=.+"
    assert re.fullmatch(pattern, url)
    auth = {"Authorization": f"Bearer {deployer.token}"}
    for wrong, headers, status in [(url, {}, 401), (url + "0", auth, 403)]:
        with pytest.raises(InvalidStatus) as refused:
            connect(wrong, additional_headers=headers)
        assert refused.value.response.status_code == status
        assert json.loads(refused.value.response.body or b"")["message"]
    output, status = b"", None
    with connect(url, additional_headers=auth) as socket:
        socket.send(bytes([0]) + b"echo via-$((1+1)); exit 5\n")
        for message in socket:
            assert isinstance(message, bytes)
            if message[0] == 1:
                output += message[1:]
            elif message[0] == 3:
                status = json.loads(message[1:])["status"]
    assert b"via-2" in output
    assert status == 5
    with pytest.raises(InvalidStatus) as refused:
        connect(url, additional_headers=auth)  # once only
    assert refused.value.response.status_code in (404, 409)  # ended, or ending

    for body, problem in [
        ({"command": "  "}, "command"),
        ({"command": "true", "size": "huge"}, "not a dyno size"),
        ({"command": "true", "type": "worker"}, "type"),
        ({"command": "true", "env": {"1A": "x"}}, "cannot be variable names"),
        ({"command": "true", "time_to_live": 0}, "time_to_live"),
        ({"command": "true", "color": "red"}, "unknown field"),
    ]:
        refused = deployer.client.post(f"/apps/{app}/dynos", json=body)
        assert refused.status_code == 422, (body, refused.text)
        assert problem in refused.json()["message"]
