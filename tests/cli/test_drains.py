"""``drains``, ``drains:add``, ``drains:remove`` against a real server, with a real syslog
receiver on loopback: what the app's stream gets (here its app[api] lines for a config
change) reaches the drain, framed and named by the drain's token."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from cli.runner import Cli
from conftest import wait_until
from receivers import SyslogReceiver, syslog_receiver


@pytest.fixture
def receiver() -> Iterator[SyslogReceiver]:
    with syslog_receiver() as running:
        yield running


def test_drains_are_added_listed_delivered_to_and_removed(
    alice: Cli, app: str, receiver: SyslogReceiver
) -> None:
    assert "has no drains" in alice.run("drains", "-a", app).stderr
    url = receiver.url
    result = alice.run("drains:add", url, "-a", app)
    assert f"Adding drain {url} to ⬢ {app}... done" in result.stderr
    assert f"Successfully added drain {url} (token d." in result.stderr
    (drain,) = json.loads(alice.out("drains", "--json", "-a", app))
    assert drain["url"] == url
    token = drain["token"]
    listed = alice.out("drains", "-a", app).splitlines()
    assert listed[0] == f"=== {app} Drains"
    assert listed[1].split() == [url, token]

    # The drain starts at once; what the app's stream gets from then on is sent to it.
    def delivered() -> bool:
        alice.set_config(app, GREETING="hello-secret")
        return any("Set GREETING config vars by" in m for m in receiver.messages)

    wait_until(delivered, timeout=30, interval=0.5)
    sent = next(m for m in receiver.messages if "Set GREETING config vars by" in m)
    assert sent.startswith("<190>1 ")
    assert f" {token} {app} api app - Set GREETING config vars by {alice.email}" in sent
    assert not any("hello-secret" in m for m in receiver.messages)

    secret = "https://user:s3cret@127.0.0.1:1/in"
    alice.run("drains:add", secret, "-a", app)
    shown = alice.out("drains", "-a", app)
    assert "https://user:***@127.0.0.1:1/in" in shown
    assert "s3cret" not in shown
    assert "already drains to" in alice.fails("drains:add", url, "-a", app)
    assert "is not a drain URL" in alice.fails("drains:add", "ftp://example.com", "-a", app)

    result = alice.run("drains:remove", token, "-a", app)
    assert f"Successfully removed drain {url}" in result.stderr
    alice.run("drains:remove", secret, "-a", app)
    assert "has no drain" in alice.fails("drains:remove", token, "-a", app)
    assert json.loads(alice.out("drains", "--json", "-a", app)) == []
