"""``login``, ``logout``, ``auth:token``, ``auth:whoami``: credentials in ~/.netrc."""

from __future__ import annotations

import json
import stat
from urllib.parse import urlsplit

from cli.runner import Cli, Users
from conftest import free_port


def host(cli: Cli) -> str:
    return str(urlsplit(cli.server.url).hostname)


def test_login_with_token_writes_netrc_and_config(users: Users) -> None:
    bob = users.stranger()
    bob.email = "bob@example.com"
    bob.token = bob.server.create_user(bob.email)
    netrc = bob.home / ".netrc"
    netrc.write_text("# my other logins\nmachine git.example.com\n  login me\n  password secret\n")
    netrc.chmod(0o644)

    result = bob.run("login", "--token", bob.token)

    assert f"Logged in as {bob.email}" in result.stderr
    assert result.stdout == ""
    text = netrc.read_text()
    assert f"machine {host(bob)}\n  login {bob.email}\n  password {bob.token}\n" in text
    assert "# my other logins\nmachine git.example.com\n  login me\n  password secret\n" in text
    assert stat.S_IMODE(netrc.stat().st_mode) == 0o600
    config = json.loads((bob.home / ".config" / "dockyard" / "config.json").read_text())
    assert config == {"api_url": bob.server.url}


def logged_in(users: Users) -> Cli:
    """A user logged in by `dockyard login`, with no token in the environment."""
    cli = users.new(logged_in=False)
    cli.run("login", "--token", cli.token)
    return cli


def test_login_replaces_the_old_entry(users: Users) -> None:
    bob = logged_in(users)
    bob.run("login", "--token", bob.token)
    assert (bob.home / ".netrc").read_text().count(f"machine {host(bob)}") == 1


def test_saved_login_is_used(users: Users) -> None:
    bob = logged_in(users)
    del bob.env["DOCKYARD_API_URL"]  # the URL comes from ~/.config/dockyard too
    assert bob.out("auth:whoami") == f"{bob.email}\n"
    assert bob.out("auth:token") == f"{bob.token}\n"


def test_login_prompts_for_email_and_token(users: Users) -> None:
    bob = users.new(logged_in=False)
    result = bob.run("login", input=f"{bob.email}\n{bob.token}\n")
    assert f"Logged in as {bob.email}" in result.stderr
    assert bob.out("auth:whoami") == f"{bob.email}\n"


def test_login_refuses_a_token_of_someone_else(users: Users) -> None:
    bob = users.new(logged_in=False)
    error = bob.fails("login", input=f"carol@example.com\n{bob.token}\n")
    assert f"that token belongs to {bob.email}, not carol@example.com" in error
    assert not (bob.home / ".netrc").exists()


def test_login_with_a_wrong_token_fails_and_saves_nothing(users: Users) -> None:
    stranger = users.stranger()
    error = stranger.fails("login", "--token", "dky_wrong")
    assert "invalid credentials" in error
    assert not (stranger.home / ".netrc").exists()


def test_login_to_an_unreachable_server(users: Users) -> None:
    stranger = users.stranger()
    url = f"http://127.0.0.1:{free_port()}"
    error = stranger.fails("login", "--api-url", url, "--token", "dky_x")
    assert f"cannot reach the Dockyard API at {url}:" in error


def test_api_key_in_the_environment_wins(users: Users) -> None:
    alice, bob = logged_in(users), users.new(logged_in=False)
    env = {"DOCKYARD_API_KEY": bob.token}
    assert alice.run("auth:whoami", env=env).stdout == f"{bob.email}\n"
    assert alice.run("auth:token", env=env).stdout == f"{bob.token}\n"


def test_wrong_token_shows_the_servers_message(alice: Cli) -> None:
    error = alice.run("apps", ok=False, env={"DOCKYARD_API_KEY": "dky_nope"}).stderr
    assert "invalid credentials: the API token is wrong or was revoked" in error


def test_logout_removes_only_its_entry(users: Users) -> None:
    alice = logged_in(users)
    netrc = alice.home / ".netrc"
    netrc.write_text(netrc.read_text() + "machine other.example.com login x password y\n")

    assert "Logging out... done" in alice.run("logout").stderr

    text = netrc.read_text()
    assert alice.token not in text
    assert "machine other.example.com login x password y" in text
    assert stat.S_IMODE(netrc.stat().st_mode) == 0o600
    assert "not logged in" in alice.fails("auth:whoami")
    assert "dockyard login" in alice.fails("auth:token")


def test_not_logged_in(users: Users) -> None:
    error = users.stranger().fails("apps")
    assert "not logged in" in error
    assert "dockyard login" in error
