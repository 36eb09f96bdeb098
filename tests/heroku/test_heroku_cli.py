"""The official Heroku CLI (npm package ``heroku``) works against Dockyard's API.

``scripts/test`` installs it and exports ``DOCKYARD_TEST_HEROKU_CLI``; the CLI is pointed
at the test server with ``HEROKU_HOST`` and never contacts another host.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import ACCEPT, APPS, Server, git, git_url, make_repo

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
