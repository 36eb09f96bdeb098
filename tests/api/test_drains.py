"""``/apps/{app}/log-drains``: Heroku's shape, lookup by id, token or URL, and bad input."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote

import pytest

from api.checks import error, ok, unchanged
from conftest import Api, ApiUser
from dockyard.settings import Settings
from dockyard.store import Database

SYSLOG = "syslog+tls://logs.example.com:6514"
HTTPS = "https://user:s3cret@logs.example.com/drain?app=shop"


@pytest.fixture
def owner(api: Api) -> ApiUser:
    user = api.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    return user


def test_drains_have_herokus_shape_and_are_found_by_id_token_or_url(owner: ApiUser) -> None:
    added = ok(owner.client.post("/apps/shop/log-drains", json={"url": SYSLOG}), 201)
    assert set(added) == {"id", "url", "token", "addon", "app", "created_at", "updated_at"}
    assert added["url"] == SYSLOG
    assert re.fullmatch(r"d\.[0-9a-f-]{36}", added["token"])
    assert added["addon"] is None
    assert added["app"]["name"] == "shop"
    https = ok(owner.client.post("/apps/shop/log-drains", json={"url": HTTPS}), 201)
    assert https["token"] != added["token"]

    listed = ok(owner.client.get("/apps/shop/log-drains"))
    assert [d["url"] for d in listed] == [HTTPS, SYSLOG]  # by URL
    for identity in (added["id"], added["token"], quote(SYSLOG, safe="")):
        assert ok(owner.client.get(f"/apps/shop/log-drains/{identity}"))["id"] == added["id"]

    removed = ok(owner.client.delete(f"/apps/shop/log-drains/{quote(HTTPS, safe='')}"))
    assert removed["token"] == https["token"]
    ok(owner.client.delete(f"/apps/shop/log-drains/{added['token']}"))
    assert ok(owner.client.get("/apps/shop/log-drains")) == []
    error(
        owner.client.delete(f"/apps/shop/log-drains/{added['token']}"),
        404,
        "not_found",
        "has no drain",
    )


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("http://logs.example.com/in", "use syslog://HOST:PORT"),
        ("syslog://logs.example.com", "needs a port"),
        ("syslog+tls://:6514", "no host"),
        ("https://logs.example.com/a b", "spaces"),
    ],
)
def test_bad_urls_are_refused_and_nothing_is_stored(
    api: Api, owner: ApiUser, url: str, says: str
) -> None:
    with unchanged(api.database):
        error(
            owner.client.post("/apps/shop/log-drains", json={"url": url}),
            422,
            "invalid_params",
            says,
        )


def test_a_url_twice_is_refused_without_showing_its_password(api: Api, owner: ApiUser) -> None:
    ok(owner.client.post("/apps/shop/log-drains", json={"url": HTTPS}), 201)
    with unchanged(api.database):
        message = error(
            owner.client.post("/apps/shop/log-drains", json={"url": HTTPS}),
            422,
            "invalid_params",
            "already drains to https://user:***@logs.example.com/drain",
        )
    assert "s3cret" not in message


def test_drains_are_for_those_who_may_see_the_app(api: Api, owner: ApiUser) -> None:
    added = ok(owner.client.post("/apps/shop/log-drains", json={"url": SYSLOG}), 201)
    stranger = api.user("stranger@example.com")
    error(stranger.client.get("/apps/shop/log-drains"), 404, "not_found")
    error(stranger.client.post("/apps/shop/log-drains", json={"url": SYSLOG}), 404, "not_found")
    error(stranger.client.delete(f"/apps/shop/log-drains/{added['id']}"), 404, "not_found")
    ok(stranger.client.post("/apps", json={"name": "other"}), 201)
    # Another app's drain is not found through one's own app.
    error(stranger.client.get(f"/apps/other/log-drains/{added['token']}"), 404, "not_found")


@pytest.mark.parametrize(
    "url",
    [
        "syslog://127.0.0.1:514",
        "syslog+tls://[::1]:6514",
        "syslog://10.0.0.7:514",
        "https://169.254.169.254/latest/meta-data",
        "https://user:s3cret@192.168.1.10/drain",
    ],
)
def test_drains_to_private_addresses_are_refused(owner: ApiUser, url: str) -> None:
    reply = owner.client.post("/apps/shop/log-drains", json={"url": url})
    message = error(
        reply,
        422,
        "invalid_params",
        "is a private, loopback or link-local address",
        "DOCKYARD_DRAIN_PRIVATE_ADDRESSES=true",
    )
    assert "s3cret" not in message
    assert ok(owner.client.get("/apps/shop/log-drains")) == []


def test_an_operator_can_allow_drains_to_private_addresses(
    tmp_path: Path, sqlite_database: Database
) -> None:
    settings = Settings(
        data_dir=tmp_path / "data", domain="dockyard.test", drain_private_addresses=True
    )
    user = Api(settings, sqlite_database).user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    added = ok(
        user.client.post("/apps/shop/log-drains", json={"url": "syslog://10.0.0.7:514"}), 201
    )
    assert added["url"] == "syslog://10.0.0.7:514"
