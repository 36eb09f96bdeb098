"""The official Heroku CLI (npm package ``heroku``) works against Dockyard's API.

``scripts/test`` installs it and exports ``DOCKYARD_TEST_HEROKU_CLI``; the CLI is pointed
at the test server with ``HEROKU_HOST`` and never contacts another host.
"""

from __future__ import annotations

import os
import pty
import re
import select
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from certs.making import TestCA
from conftest import ACCEPT, APPS, Server, git, git_url, make_repo, wait_until

REPO = Path(__file__).resolve().parents[2]


def heroku_binary() -> str:
    given = os.environ.get("DOCKYARD_TEST_HEROKU_CLI") or str(
        REPO / ".cache" / "heroku-cli" / "node_modules" / ".bin" / "heroku"
    )
    if not Path(given).exists():
        message = f"the Heroku CLI is not installed at {given}; scripts/test installs it"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return given


class Heroku:
    def __init__(self, server: Server, token: str, home: Path) -> None:
        self.binary = heroku_binary()
        self.server = server
        self.token = token
        home.mkdir(parents=True, exist_ok=True)
        (home / ".cache" / "heroku").mkdir(parents=True, exist_ok=True)
        # Acknowledge the terms notice so it does not interleave with what the tests read.
        (home / ".cache" / "heroku" / "terms-of-service").write_text("")
        self.cwd = home
        unset = ("HEROKU_APP", "HEROKU_TEAM", "HEROKU_ORGANIZATION", "HEROKU_HEADERS")
        self.env = {k: v for k, v in os.environ.items() if k not in unset}
        self.env.update(
            HOME=str(home),
            XDG_CACHE_HOME=str(home / ".cache"),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_DATA_HOME=str(home / ".local" / "share"),
            HEROKU_HOST=server.url,
            HEROKU_PARTICLEBOARD_URL=server.url,
            HEROKU_API_KEY=token,
            DISABLE_TELEMETRY="true",
            HEROKU_SKIP_NEW_VERSION_CHECK="true",
            HEROKU_DISABLE_AUTOUPDATE="true",
            NO_COLOR="1",
        )

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [self.binary, *args],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if ok and done.returncode != 0:
            raise AssertionError(
                f"heroku {' '.join(args)} failed ({done.returncode}):\n{done.stderr}"
            )
        return done

    def answer(self, *args: str, prompt: str, keys: str) -> str:
        """Run a command on a terminal (its prompts need one), type ``keys`` once it shows
        ``prompt``; what it printed, without terminal codes. Fails unless it exits 0."""
        main, terminal = pty.openpty()
        process = subprocess.Popen(
            [self.binary, *args],
            cwd=self.cwd,
            env={**self.env, "TERM": "dumb"},
            stdin=terminal,
            stdout=terminal,
            stderr=terminal,
        )
        os.close(terminal)
        shown, typed = b"", False
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline:
                ready, _, _ = select.select([main], [], [], 0.2)
                if ready:
                    try:
                        chunk = os.read(main, 4096)
                    except OSError:  # EIO: the command exited and closed the terminal
                        break
                    if not chunk:
                        break
                    shown += chunk
                    if not typed and prompt.encode() in shown:
                        os.write(main, keys.encode())
                        typed = True
                elif process.poll() is not None:
                    break
            else:
                raise AssertionError(f"heroku {' '.join(args)} did not finish: {shown!r}")
            code = process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            os.close(main)
        text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode(errors="replace"))
        assert typed, f"heroku {' '.join(args)} never asked {prompt!r}:\n{text}"
        assert code == 0, f"heroku {' '.join(args)} failed ({code}):\n{text}"
        return text

    def api(self, path: str) -> Any:
        reply = httpx.get(
            f"{self.server.url}{path}",
            headers={"Accept": ACCEPT, "Authorization": f"Bearer {self.token}"},
        )
        reply.raise_for_status()
        return reply.json()


@pytest.fixture(scope="module")
def heroku(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Heroku:
    if shutil.which("node") is None:
        pytest.fail("node is needed to run the Heroku CLI; scripts/test installs nodejs")
    token = server.create_user("heroku-user@example.com")
    return Heroku(server, token, tmp_path_factory.mktemp("heroku-home"))


def releases(heroku: Heroku, app: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = heroku.api(f"/apps/{app}/releases")
    return found


def test_create_list_and_info(heroku: Heroku) -> None:
    created = heroku.run("apps:create", "hk-demo", "--no-remote")
    assert "http://hk-demo.localhost" in created.stdout
    assert "Creating" in created.stderr
    assert "done" in created.stderr

    unnamed = heroku.run("apps:create", "--no-remote")
    name = re.search(r"http://([a-z0-9-]+)\.localhost", unnamed.stdout)
    assert name, unnamed.stdout
    assert heroku.api(f"/apps/{name.group(1)}")

    listed = heroku.run("apps")
    assert "heroku-user@example.com Apps" in listed.stdout
    assert re.search(r"^hk-demo\b", listed.stdout, re.MULTILINE)
    assert name.group(1) in listed.stdout

    info = heroku.run("apps:info", "-a", "hk-demo")
    assert "=== hk-demo" in info.stdout
    assert re.search(r"Owner:\s+heroku-user@example.com", info.stdout)
    assert re.search(r"Git URL:\s+http://127\.0\.0\.1:\d+/hk-demo\.git", info.stdout)
    assert re.search(r"Stack:\s+dockyard-24", info.stdout)


def test_config_set_unset_and_show(heroku: Heroku) -> None:
    heroku.run("apps:create", "hk-config", "--no-remote")
    done = heroku.run("config:set", "A=1", "GREETING=hello there", "EQ=a=b", "-a", "hk-config")
    assert re.search(r"Setting A, GREETING, EQ and restarting .*hk-config.*done, v2", done.stderr)
    assert heroku.api("/apps/hk-config/config-vars") == {
        "A": "1",
        "GREETING": "hello there",
        "EQ": "a=b",
    }

    shown = heroku.run("config", "-a", "hk-config")
    assert re.search(r"^GREETING:\s+hello there$", shown.stdout, re.MULTILINE)
    assert re.search(r"^EQ:\s+a=b$", shown.stdout, re.MULTILINE)

    unset = heroku.run("config:unset", "A", "-a", "hk-config")
    assert re.search(r"Unsetting A and restarting .*hk-config.*done, v3", unset.stderr)
    assert heroku.api("/apps/hk-config/config-vars") == {"GREETING": "hello there", "EQ": "a=b"}

    history = heroku.run("releases", "-a", "hk-config")
    assert "Current: v3" in history.stdout
    assert "Remove A config vars" in history.stdout
    assert "Set A, GREETING, EQ config vars" in history.stdout
    assert "Initial release" in history.stdout


def test_rollback(heroku: Heroku) -> None:
    heroku.run("apps:create", "hk-rollback", "--no-remote")
    heroku.run("config:set", "STEP=one", "-a", "hk-rollback")  # v2
    heroku.run("config:set", "STEP=two", "-a", "hk-rollback")  # v3

    back = heroku.run("rollback", "v2", "-a", "hk-rollback")
    assert re.search(r"Rolling back .*hk-rollback.* to v2.*done, v4", back.stderr, re.DOTALL)
    assert heroku.api("/apps/hk-rollback/config-vars") == {"STEP": "one"}
    newest = max(releases(heroku, "hk-rollback"), key=lambda r: int(r["version"]))
    assert newest["description"] == "Rollback to v2"
    assert newest["current"] is True

    # Without a version: back to the release before the current one (v3).
    again = heroku.run("rollback", "-a", "hk-rollback")
    assert re.search(r"to v3.*done, v5", again.stderr, re.DOTALL)
    assert heroku.api("/apps/hk-rollback/config-vars") == {"STEP": "two"}


def test_errors_are_shown(heroku: Heroku) -> None:
    missing = heroku.run("apps:info", "-a", "no-such-app", ok=False)
    assert missing.returncode != 0
    assert "Couldn't find that app" in missing.stderr

    bad = heroku.run("apps:create", "Bad_Name", "--no-remote", ok=False)
    assert bad.returncode != 0
    assert "is invalid" in bad.stderr
    assert "Bad_Name" not in [app["name"] for app in heroku.api("/apps")]


def test_ps_scale_and_type_after_a_push(heroku: Heroku, tmp_path: Path) -> None:
    heroku.run("apps:create", "hk-scale", "--no-remote")
    repo = make_repo(APPS / "procfile-shell", tmp_path / "repo")
    pushed = git("push", git_url(heroku.server, heroku.token, "hk-scale"), "main", cwd=repo)
    assert "Released v2" in pushed.stdout

    scaled = heroku.run("ps:scale", "web=2", "worker+1", "-a", "hk-scale")
    assert "now running web at 2:Standard-1X, worker at 1:Standard-1X" in scaled.stderr
    formation = {f["type"]: f for f in heroku.api("/apps/hk-scale/formation")}
    assert (formation["web"]["quantity"], formation["worker"]["quantity"]) == (2, 1)

    heroku.run("ps:type", "worker=standard-2x", "-a", "hk-scale")
    assert heroku.api("/apps/hk-scale/formation/worker")["size"] == "Standard-2X"

    refused = heroku.run("ps:scale", "nope=1", "-a", "hk-scale", ok=False)
    assert refused.returncode != 0
    assert "web, worker" in refused.stderr


def test_ps_restart_and_stop(heroku: Heroku, tmp_path: Path) -> None:
    heroku.run("apps:create", "hk-ps", "--no-remote")
    repo = make_repo(APPS / "web-shell", tmp_path / "repo")
    git("push", git_url(heroku.server, heroku.token, "hk-ps"), "main", cwd=repo)

    def up() -> dict[str, str]:
        return {d["name"]: d["id"] for d in heroku.api("/apps/hk-ps/dynos") if d["state"] == "up"}

    wait_until(lambda: "web.1" in up(), timeout=30)
    shown = heroku.run("ps", "-a", "hk-ps")
    assert "=== web (Standard-1X): bin/web (1)" in shown.stdout
    assert re.search(r"^web\.1: up ", shown.stdout, re.MULTILINE), shown.stdout

    first = up()["web.1"]
    heroku.run("ps:restart", "web", "-a", "hk-ps")
    wait_until(lambda: up().get("web.1") not in (None, first), timeout=30)
    second = up()["web.1"]
    heroku.run("ps:stop", "web.1", "-a", "hk-ps")
    wait_until(lambda: up().get("web.1") not in (None, second), timeout=30)
    third = up()["web.1"]
    heroku.run("restart", "-a", "hk-ps")
    wait_until(lambda: up().get("web.1") not in (None, third), timeout=30)
    heroku.run("ps:scale", "web=0", "-a", "hk-ps")
    wait_until(lambda: up() == {}, timeout=30)


LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 \w+\[[\w.]+\]: .*$")


def test_logs_and_logs_tail(heroku: Heroku, tmp_path: Path) -> None:
    heroku.run("apps:create", "hk-logs", "--no-remote")
    repo = make_repo(APPS / "logger", tmp_path / "repo")
    git("push", git_url(heroku.server, heroku.token, "hk-logs"), "main", cwd=repo)

    def recent(*args: str) -> list[str]:
        return heroku.run("logs", *args, "-a", "hk-logs").stdout.splitlines()

    wait_until(lambda: len(recent("-n", "20")) == 20, timeout=60, interval=0.5)
    shown = recent("-n", "20")
    assert all(LOG_LINE.match(line) for line in shown), shown
    assert any(" app[web.1]: tick " in line for line in shown), shown
    web = recent("-n", "5", "-p", "web", "-s", "app")
    assert len(web) == 5
    assert all(" app[web.1]: " in line for line in web), web
    platform = recent("-s", "heroku")
    assert any(" dockyard[web.1]: State changed from starting to up" in line for line in platform)

    (dyno,) = [d for d in heroku.api("/apps/hk-logs/dynos") if d["state"] == "up"]
    tail = subprocess.Popen(
        [heroku.binary, "logs", "--tail", "-a", "hk-logs"],
        cwd=heroku.cwd,
        env=heroku.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    tailed: list[str] = []
    assert tail.stdout is not None
    stdout = tail.stdout

    def read() -> None:
        tailed.extend(line.rstrip("\n") for line in stdout)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(" app[web.1]: tick " in line for line in list(tailed)), timeout=60)
        marker = f"tailed-{time.time_ns()}"
        said = httpx.get(f"http://127.0.0.1:{dyno['port']}/say", params={"text": marker})
        said.raise_for_status()
        wait_until(lambda: any(line.endswith(f" app[web.1]: {marker}") for line in list(tailed)))
    finally:
        tail.kill()
        tail.wait()
        reader.join(timeout=10)
        stdout.close()
    heroku.run("ps:scale", "web=0", "-a", "hk-logs")


def test_drains_add_list_and_remove(heroku: Heroku) -> None:
    heroku.run("apps:create", "hk-drains", "--no-remote")
    url = "syslog+tls://logs.example.com:6514"
    added = heroku.run("drains:add", url, "-a", "hk-drains")
    assert f"Successfully added drain {url}" in added.stdout + added.stderr
    (drain,) = heroku.api("/apps/hk-drains/log-drains")
    assert drain["url"] == url
    assert re.fullmatch(r"d\.[0-9a-f-]{36}", drain["token"])
    listed = heroku.run("drains", "-a", "hk-drains").stdout
    assert url in listed
    assert drain["token"] in listed
    refused = heroku.run("drains:add", "ftp://logs.example.com", "-a", "hk-drains", ok=False)
    assert refused.returncode != 0
    assert "is not a drain URL" in refused.stderr
    removed = heroku.run("drains:remove", url, "-a", "hk-drains")
    assert f"Successfully removed drain {url}" in removed.stdout + removed.stderr
    assert heroku.api("/apps/hk-drains/log-drains") == []


def test_certs_and_certs_info(heroku: Heroku) -> None:
    heroku.run("apps:create", "hk-certs", "--no-remote")
    headers = {"Accept": ACCEPT, "Authorization": f"Bearer {heroku.token}"}
    with httpx.Client(base_url=heroku.server.url, headers=headers) as api:
        api.post("/apps/hk-certs/domains", json={"hostname": "www.hk-certs.example"})
        issued = TestCA().issue(["www.hk-certs.example"])
        reply = api.post(
            "/apps/hk-certs/sni-endpoints",
            json={"certificate_chain": issued.chain, "private_key": issued.key},
        )
        assert reply.status_code == 201, reply.text
        name = reply.json()["name"]
    listed = heroku.run("certs", "-a", "hk-certs").stdout
    row = next(line for line in listed.splitlines() if name in line)
    assert row.split()[1:2] == ["www.hk-certs.example"]
    assert row.split()[-3:] == ["True", "SNI", "1"]
    info = heroku.run("certs:info", "-a", "hk-certs").stdout
    assert "Common Name(s): www.hk-certs.example" in info
    assert "SSL certificate is verified by a root authority." in info


def test_certs_add_associates_the_domains_chosen_and_domains_update(
    heroku: Heroku, tmp_path: Path
) -> None:
    app = "hk-sni"
    www, api = f"www.{app}.example", f"api.{app}.example"
    heroku.run("apps:create", app, "--no-remote")
    for hostname in (www, api):
        heroku.run("domains:add", hostname, "-a", app)
    issued = TestCA().issue([www, api])
    crt, key = tmp_path / "site.crt", tmp_path / "site.key"
    crt.write_text(issued.chain)
    key.write_text(issued.key)
    # certs:add asks which of the domains it covers to associate: the first (www) is chosen.
    shown = heroku.answer(
        "certs:add", str(crt), str(key), "-a", app, prompt="Select domains", keys=" \r"
    )
    assert "Which of these domains on this application" in shown
    (endpoint,) = heroku.api(f"/apps/{app}/sni-endpoints")
    name = endpoint["name"]
    assert heroku.api(f"/apps/{app}/domains/{www}")["sni_endpoint"] == {
        "id": endpoint["id"],
        "name": name,
    }
    assert heroku.api(f"/apps/{app}/domains/{api}")["sni_endpoint"] is None

    updated = heroku.run("domains:update", api, "--cert", name, "-a", app)
    assert f"Updating {api} to use {name} certificate" in updated.stderr
    assert heroku.api(f"/apps/{app}/domains/{api}")["sni_endpoint"]["name"] == name
    listed = heroku.run("domains", "-a", app).stdout
    rows = [line.split() for line in listed.splitlines() if f"{app}.example" in line]
    assert sorted((row[0], row[-1]) for row in rows) == [(api, name), (www, name)]
    refused = heroku.run("domains:update", api, "--cert", "nosuch-1", "-a", app, ok=False)
    assert refused.returncode != 0
    assert "nosuch-1 is not an SNI endpoint" in refused.stderr


def test_certs_auto_enable_status_refresh_and_disable(heroku: Heroku) -> None:
    app, hostname = "hk-acm", "www.hk-acm.example"
    heroku.run("apps:create", app, "--no-remote")
    heroku.run("domains:add", hostname, "-a", app)
    enabled = heroku.run("certs:auto:enable", "-a", app)
    assert "Enabling Automatic Certificate Management" in enabled.stderr
    assert heroku.api(f"/apps/{app}")["acm"] is True
    # The test server's ACME directory is a closed loopback port: the order fails, with why.
    wait_until(lambda: heroku.api(f"/apps/{app}/domains/{hostname}")["acm_status"] == "failed", 30)
    shown = heroku.run("certs:auto", "-a", app).stdout
    assert f"Automatic Certificate Management is enabled on {app}" in shown
    row = next(line for line in shown.splitlines() if line.strip().startswith(hostname))
    assert row.split()[1] == "Failed"
    assert "could not be reached: Connection refused" in row
    assert "heroku certs:auto:refresh" in shown
    heroku.run("certs:auto:refresh", "-a", app)
    heroku.run("certs:auto:disable", "-a", app, "--confirm", app)
    assert heroku.api(f"/apps/{app}")["acm"] is False
    assert heroku.api(f"/apps/{app}/domains/{hostname}")["acm_status"] is None
    disabled = heroku.run("certs:auto", "-a", app).stdout
    assert f"Automatic Certificate Management is disabled on {app}" in disabled
