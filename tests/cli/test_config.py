"""``config``, ``config:get``, ``config:set``, ``config:unset``."""

from __future__ import annotations

import json
import subprocess

from cli.runner import Cli


def test_set_get_unset(alice: Cli, app: str) -> None:
    result = alice.run(
        "config:set", "A=1", "GREETING=hello world", "URL=pg://u:p@h/db?x=1&y=2", "-a", app
    )
    assert f"Setting A, GREETING, URL and restarting ⬢ {app}... done, v2" in result.stderr
    assert result.stdout == "A:        1\nGREETING: hello world\nURL:      pg://u:p@h/db?x=1&y=2\n"

    assert alice.out("config:get", "GREETING", "-a", app) == "hello world\n"
    assert alice.out("config:get", "URL", "-a", app) == "pg://u:p@h/db?x=1&y=2\n"
    assert alice.out("config:get", "GREETING", "-s", "-a", app) == "GREETING='hello world'\n"
    assert alice.out("config:get", "MISSING", "-a", app) == "\n"

    shown = alice.out("config", "-a", app)
    assert shown == (
        f"=== {app} Config Vars\n\n"
        "A:        1\nGREETING: hello world\nURL:      pg://u:p@h/db?x=1&y=2\n"
    )
    assert json.loads(alice.out("config", "-j", "-a", app)) == {
        "A": "1",
        "GREETING": "hello world",
        "URL": "pg://u:p@h/db?x=1&y=2",
    }
    assert json.loads(alice.out("config", "--json", "-a", app))["A"] == "1"

    result = alice.run("config:unset", "A", "URL", "-a", app)
    assert f"Unsetting A, URL and restarting ⬢ {app}... done, v3" in result.stderr
    assert json.loads(alice.out("config", "-j", "-a", app)) == {"GREETING": "hello world"}


def test_shell_format_reads_back_in_a_shell(alice: Cli, app: str) -> None:
    tricky = 'it\'s a "quoted" $HOME `x` value; a=b'
    alice.run("config:set", f"TRICKY={tricky}", "EMPTY=", "PLAIN=abc", "-a", app)
    shell = alice.out("config", "-s", "-a", app)
    assert "PLAIN=abc\n" in shell
    echoed = subprocess.run(
        ["bash", "-c", 'eval "$1"; printf "%s|%s|%s" "$TRICKY" "$EMPTY" "$PLAIN"', "-", shell],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert echoed == f"{tricky}||abc"


def test_set_without_equals_is_refused_before_sending(alice: Cli, app: str) -> None:
    error = alice.fails("config:set", "A=1", "NOEQUALS", "-a", app)
    assert "'NOEQUALS' is not KEY=VALUE" in error
    assert "=1" in alice.fails("config:set", "=1", "-a", app)
    assert json.loads(alice.out("config", "-j", "-a", app)) == {}


def test_set_needs_an_argument(alice: Cli, app: str) -> None:
    assert "Missing argument" in alice.fails("config:set", "-a", app)


def test_invalid_name_shows_the_servers_message(alice: Cli, app: str) -> None:
    error = alice.fails("config:set", "1BAD=x", "-a", app)
    assert f"Setting 1BAD and restarting ⬢ {app}... !" in error
    assert "Config var name '1BAD' is invalid" in error


def test_reserved_name(alice: Cli, app: str) -> None:
    assert "PORT is set by the platform" in alice.fails("config:set", "PORT=1", "-a", app)


def test_unknown_app(alice: Cli) -> None:
    assert "Couldn't find that app: nope-nope." in alice.fails("config", "-a", "nope-nope")
