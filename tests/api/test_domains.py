"""``/apps/{app}/domains``: Heroku's shape, the default hostname, custom and wildcard domains,
one app per hostname, invalid hostnames, and who may change them."""

from __future__ import annotations

import pytest

from api.checks import error, ok, unchanged
from conftest import Api, ApiUser

FIELDS = {
    "id",
    "hostname",
    "kind",
    "cname",
    "status",
    "acm_status",
    "acm_status_reason",
    "sni_endpoint",
    "app",
    "created_at",
    "updated_at",
}


@pytest.fixture
def owner(api_on: Api) -> ApiUser:
    user = api_on.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    return user


def test_an_app_has_its_default_hostname(owner: ApiUser) -> None:
    (default,) = ok(owner.client.get("/apps/shop/domains"))
    assert set(default) == FIELDS
    assert default["hostname"] == "shop.dockyard.test"
    assert default["kind"] == "default"
    assert default["cname"] is None
    assert default["app"]["name"] == "shop"
    assert ok(owner.client.get(f"/apps/shop/domains/{default['id']}")) == default
    assert ok(owner.client.get("/apps/shop/domains/shop.dockyard.test")) == default

    # It follows the app's name, and keeps its id.
    ok(owner.client.patch("/apps/shop", json={"name": "store"}))
    (renamed,) = ok(owner.client.get("/apps/store/domains"))
    assert renamed["hostname"] == "store.dockyard.test"
    assert renamed["id"] == default["id"]


def test_custom_and_wildcard_domains_are_added_listed_and_removed(owner: ApiUser) -> None:
    added = ok(owner.client.post("/apps/shop/domains", json={"hostname": "WWW.Shop.org."}), 201)
    assert set(added) == FIELDS
    assert added["hostname"] == "www.shop.org"
    assert added["kind"] == "custom"
    assert added["cname"] == "shop.dockyard.test"
    assert added["status"] == "succeeded"
    wildcard = ok(owner.client.post("/apps/shop/domains", json={"hostname": "*.shop.org"}), 201)
    assert wildcard["hostname"] == "*.shop.org"

    listed = ok(owner.client.get("/apps/shop/domains"))
    assert sorted((d["hostname"], d["kind"]) for d in listed) == [
        ("*.shop.org", "custom"),
        ("shop.dockyard.test", "default"),
        ("www.shop.org", "custom"),
    ]
    assert ok(owner.client.get(f"/apps/shop/domains/{added['id']}")) == added

    removed = ok(owner.client.delete("/apps/shop/domains/www.shop.org"))
    assert removed["id"] == added["id"]
    error(owner.client.get("/apps/shop/domains/www.shop.org"), 404, "not_found", "www.shop.org")
    assert [d["hostname"] for d in ok(owner.client.get("/apps/shop/domains"))] == [
        "*.shop.org",
        "shop.dockyard.test",
    ]


def test_a_hostname_belongs_to_one_app(api_on: Api, owner: ApiUser) -> None:
    ok(owner.client.post("/apps/shop/domains", json={"hostname": "www.shop.org"}), 201)
    other = api_on.user("other@example.com")
    ok(other.client.post("/apps", json={"name": "rival"}), 201)
    with unchanged(api_on.database):
        error(
            other.client.post("/apps/rival/domains", json={"hostname": "www.shop.org"}),
            422,
            "invalid_params",
            "already in use by another app",
        )
        error(
            owner.client.post("/apps/shop/domains", json={"hostname": "www.shop.org"}),
            422,
            "invalid_params",
            "already a domain of shop",
        )
    # A wildcard and a more specific name are different hostnames: both may be taken.
    ok(other.client.post("/apps/rival/domains", json={"hostname": "*.shop.org"}), 201)


@pytest.mark.parametrize(
    ("hostname", "fragment"),
    [
        ("bad_name.example.com", "each label"),
        ("localhost", "at least two labels"),
        ("www.*.example.com", "wildcard"),
        ("*.com", "at least two labels"),
        ("192.168.1.10", "IP addresses"),
        ("other.dockyard.test", "belong to the platform"),
        ("api.dockyard.test", "belong to the platform"),
    ],
)
def test_invalid_hostnames_are_refused(
    api_on: Api, owner: ApiUser, hostname: str, fragment: str
) -> None:
    with unchanged(api_on.database):
        error(
            owner.client.post("/apps/shop/domains", json={"hostname": hostname}),
            422,
            "invalid_params",
            "not a valid hostname",
            fragment,
        )


def test_the_default_hostname_cannot_be_removed(api_on: Api, owner: ApiUser) -> None:
    with unchanged(api_on.database):
        error(
            owner.client.delete("/apps/shop/domains/shop.dockyard.test"),
            422,
            "invalid_params",
            "default hostname",
        )
        error(owner.client.delete("/apps/shop/domains/nope.example.com"), 404, "not_found")


def test_collaborators_manage_domains_and_strangers_see_nothing(
    api_on: Api, owner: ApiUser
) -> None:
    helper = api_on.user("helper@example.com")
    stranger = api_on.user("stranger@example.com")
    ok(owner.client.post("/apps/shop/collaborators", json={"user": helper.email}), 201)
    ok(helper.client.post("/apps/shop/domains", json={"hostname": "www.shop.org"}), 201)
    ok(helper.client.delete("/apps/shop/domains/www.shop.org"))
    error(stranger.client.get("/apps/shop/domains"), 404, "not_found")
    error(
        stranger.client.post("/apps/shop/domains", json={"hostname": "x.shop.org"}),
        404,
        "not_found",
    )


def test_destroying_an_app_frees_its_hostnames(api_on: Api, owner: ApiUser) -> None:
    ok(owner.client.post("/apps/shop/domains", json={"hostname": "www.shop.org"}), 201)
    ok(owner.client.delete("/apps/shop"))
    ok(owner.client.post("/apps", json={"name": "again"}), 201)
    ok(owner.client.post("/apps/again/domains", json={"hostname": "www.shop.org"}), 201)
