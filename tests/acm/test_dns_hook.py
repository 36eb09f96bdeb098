"""The operator's DNS-01 hook as the platform runs it: its arguments, its failures (exit
status and last lines, a hang, a file that cannot run), and input that never reaches it."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from dockyard.certs.acme import AcmeError
from dockyard.certs.acme_dns import DnsHook

NAME = "_acme-challenge.apps.example.org"
VALUE = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"


def hook(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "hook"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o700)
    return path


def test_set_and_unset_get_the_name_and_value(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    dns = DnsHook(hook(tmp_path, f'echo "$@" >> {calls}'))
    asyncio.run(dns.publish_txt(NAME, VALUE))
    asyncio.run(dns.withdraw_txt(NAME, VALUE))
    assert calls.read_text().splitlines() == [f"set {NAME} {VALUE}", f"unset {NAME} {VALUE}"]


def test_a_failing_hook_says_how(tmp_path: Path) -> None:
    dns = DnsHook(hook(tmp_path, 'echo "working"; echo "provider said: bad token" >&2; exit 3'))
    with pytest.raises(AcmeError) as failed:
        asyncio.run(dns.publish_txt(NAME, VALUE))
    assert failed.value.reason == (
        f"the DNS hook {tmp_path / 'hook'} set {NAME} failed (exit 3): "
        "working / provider said: bad token"
    )


def test_a_hanging_hook_is_stopped(tmp_path: Path) -> None:
    dns = DnsHook(hook(tmp_path, "exec sleep 30"), timeout=0.5)
    with pytest.raises(AcmeError, match=r"did not finish within 0\.5s"):
        asyncio.run(asyncio.wait_for(dns.publish_txt(NAME, VALUE), timeout=10))


def test_a_hook_that_cannot_run(tmp_path: Path) -> None:
    path = tmp_path / "not-executable"
    path.write_text("#!/bin/sh\n")
    with pytest.raises(AcmeError, match="could not run"):
        asyncio.run(DnsHook(path).publish_txt(NAME, VALUE))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("example.org", VALUE),
        (f"{NAME} --flag", VALUE),
        (NAME, "a value; rm -rf /"),
        (NAME, ""),
    ],
)
def test_odd_input_never_reaches_the_hook(tmp_path: Path, name: str, value: str) -> None:
    calls = tmp_path / "calls"
    dns = DnsHook(hook(tmp_path, f'echo "$@" >> {calls}'))
    with pytest.raises(AcmeError, match="not a DNS-01 record"):
        asyncio.run(dns.publish_txt(name, value))
    assert not calls.exists()
