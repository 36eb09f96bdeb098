"""``/apps/{app}/acm`` in-process: Heroku's enable, disable and refresh, the domains'
``acm_status`` fields, the app's ``acm``, bad input, and who may switch it."""

from __future__ import annotations

import pytest

from api.checks import error, ok, unchanged
from conftest import Api, ApiUser
from dockyard.certs import renewal
from dockyard.store import Domain


@pytest.fixture
def owner(api_on: Api) -> ApiUser:
    user = api_on.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    ok(user.client.post("/apps/shop/domains", json={"hostname": "www.shop.org"}), 201)
    return user


def statuses(user: ApiUser) -> dict[str, tuple[str | None, str | None]]:
    return {
        d["hostname"]: (d["acm_status"], d["acm_status_reason"])
        for d in ok(user.client.get("/apps/shop/domains"))
    }


def set_status(api: Api, hostname: str, status: str, reason: str | None) -> None:
    with api.database.transaction() as session:
        domain = session.query(Domain).filter(Domain.hostname == hostname).one()
        domain.acm_status = status
        domain.acm_status_reason = reason


def test_enable_marks_custom_domains_pending_and_the_app(owner: ApiUser) -> None:
    assert ok(owner.client.get("/apps/shop"))["acm"] is False
    assert statuses(owner) == {"shop.dockyard.test": (None, None), "www.shop.org": (None, None)}
    app = ok(owner.client.post("/apps/shop/acm"))
    assert app["name"] == "shop"
    assert app["acm"] is True
    assert statuses(owner) == {
        "shop.dockyard.test": (None, None),  # the default hostname is the platform's
        "www.shop.org": ("pending", None),
    }
    # A domain added while ACM is on is pending at once.
    added = ok(owner.client.post("/apps/shop/domains", json={"hostname": "api.shop.org"}), 201)
    assert added["acm_status"] == "pending"
    # Enabling twice changes nothing.
    assert ok(owner.client.post("/apps/shop/acm"))["acm"] is True


def test_refresh_reorders_failed_domains_only(api_on: Api, owner: ApiUser) -> None:
    ok(owner.client.post("/apps/shop/acm"))
    ok(owner.client.post("/apps/shop/domains", json={"hostname": "ok.shop.org"}), 201)
    set_status(api_on, "www.shop.org", renewal.FAILED, "DNS problem: NXDOMAIN")
    set_status(api_on, "ok.shop.org", renewal.ISSUED, None)
    assert statuses(owner)["www.shop.org"] == ("failed", "DNS problem: NXDOMAIN")
    app = ok(owner.client.patch("/apps/shop/acm", json={"acm_refresh": True}))
    assert app["acm"] is True
    assert statuses(owner)["www.shop.org"] == ("pending", None)
    assert statuses(owner)["ok.shop.org"] == ("cert issued", None)


def test_disable_clears_the_statuses(owner: ApiUser) -> None:
    ok(owner.client.post("/apps/shop/acm"))
    app = ok(owner.client.delete("/apps/shop/acm"))
    assert app["acm"] is False
    assert statuses(owner)["www.shop.org"] == (None, None)


def test_refresh_needs_acm_and_a_proper_body(api_on: Api, owner: ApiUser) -> None:
    with unchanged(api_on.database):
        error(
            owner.client.patch("/apps/shop/acm", json={"acm_refresh": True}),
            422,
            "invalid_params",
            "not enabled",
            "certs:auto:enable",
        )
    ok(owner.client.post("/apps/shop/acm"))
    with unchanged(api_on.database):
        error(owner.client.patch("/apps/shop/acm", json={}), 422, "invalid_params", "acm_refresh")
        error(
            owner.client.patch("/apps/shop/acm", json={"acm_refresh": True, "x": 1}),
            422,
            "invalid_params",
            "unknown field 'x'",
        )


def test_strangers_cannot_switch_it(api_on: Api, owner: ApiUser) -> None:
    stranger = api_on.user("stranger@example.com")
    with unchanged(api_on.database):
        for method in ("post", "delete"):
            error(getattr(stranger.client, method)("/apps/shop/acm"), 404, "not_found")
        error(stranger.client.patch("/apps/shop/acm", json={"acm_refresh": True}), 404, "not_found")
    assert ok(owner.client.get("/apps/shop"))["acm"] is False
