"""``/apps/{app}/sni-endpoints``: uploaded certificates in Heroku's shape, never the key; each bad
certificate refused with its reason and nothing written; HTTPS-only on the app; the local CA
certificate; and which certificate the router is told to present for which hostname."""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy import select

from api.checks import error, ok, unchanged
from certs.making import TestCA, key_pem, new_key
from conftest import Api, ApiUser
from dockyard import certs
from dockyard.certs import platform
from dockyard.router.table import read_table

FIELDS = {
    "id",
    "name",
    "display_name",
    "certificate_chain",
    "cname",
    "app",
    "domains",
    "ssl_cert",
    "created_at",
    "updated_at",
}


@pytest.fixture(scope="module")
def ca() -> TestCA:
    return TestCA()


@pytest.fixture
def owner(api_on: Api) -> ApiUser:
    user = api_on.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    for hostname in ("www.shop.example", "*.shop.example"):
        ok(user.client.post("/apps/shop/domains", json={"hostname": hostname}), 201)
    return user


def upload(user: ApiUser, chain: str, key: str, app: str = "shop") -> object:
    return user.client.post(
        f"/apps/{app}/sni-endpoints", json={"certificate_chain": chain, "private_key": key}
    )


def test_an_uploaded_certificate_is_shown_updated_and_removed(
    api_on: Api, owner: ApiUser, ca: TestCA
) -> None:
    issued = ca.issue(["www.shop.example", "shop.example"])
    created = ok(upload(owner, issued.chain, issued.key), 201)
    assert set(created) == FIELDS
    assert created["certificate_chain"] == issued.chain
    assert created["app"]["name"] == "shop"
    assert created["ssl_cert"]["cert_domains"] == ["www.shop.example", "shop.example"]
    assert created["ssl_cert"]["ca_signed?"] is True
    assert created["ssl_cert"]["expired?"] is False
    assert created["ssl_cert"]["subject"] == "CN=www.shop.example"
    (www,) = [
        d for d in ok(owner.client.get("/apps/shop/domains")) if d["hostname"] == "www.shop.example"
    ]
    assert created["domains"] == [www["id"]]
    name = created["name"]
    assert ok(owner.client.get(f"/apps/shop/sni-endpoints/{name}")) == created
    assert ok(owner.client.get(f"/apps/shop/sni-endpoints/{created['id']}")) == created
    assert ok(owner.client.get("/apps/shop/sni-endpoints")) == [created]

    # The key went in and never comes out.
    body = owner.client.get("/apps/shop/sni-endpoints").text
    assert "PRIVATE KEY" not in body

    # Updated in place: same id and name, the new chain.
    renewed = ca.issue(["www.shop.example"], days=200)
    patched = ok(
        owner.client.patch(
            f"/apps/shop/sni-endpoints/{name}",
            json={"certificate_chain": renewed.chain, "private_key": renewed.key},
        )
    )
    assert (patched["id"], patched["name"]) == (created["id"], created["name"])
    assert patched["ssl_cert"]["expires_at"] > created["ssl_cert"]["expires_at"]
    with api_on.database.transaction() as session:
        (row,) = session.scalars(select(certs.Certificate)).all()
        assert row.key_pem.startswith("-----BEGIN PRIVATE KEY-----")
        assert "PRIVATE" not in repr(row)

    # Another user sees nothing of it.
    stranger = api_on.user("stranger@example.com")
    error(stranger.client.get(f"/apps/shop/sni-endpoints/{name}"), 404, "not_found")

    removed = ok(owner.client.delete(f"/apps/shop/sni-endpoints/{name}"))
    assert removed["id"] == created["id"]
    assert ok(owner.client.get("/apps/shop/sni-endpoints")) == []
    error(owner.client.delete(f"/apps/shop/sni-endpoints/{name}"), 404, "not_found", name)


@pytest.mark.parametrize(
    ("case", "fragments"),
    [
        ("mismatched key", ["the private key does not match the certificate"]),
        ("expired", ["expired on"]),
        ("other hostnames", ["is for www.other.example", "none of which shop is served at"]),
        ("another app's hostname", ["is for www.taken.example"]),
        ("malformed", ["not valid PEM"]),
    ],
)
def test_each_bad_certificate_is_refused_and_nothing_is_written(
    api: Api, ca: TestCA, case: str, fragments: list[str]
) -> None:
    user = api.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    ok(user.client.post("/apps/shop/domains", json={"hostname": "www.shop.example"}), 201)
    ok(user.client.post("/apps", json={"name": "taken"}), 201)
    ok(user.client.post("/apps/taken/domains", json={"hostname": "www.taken.example"}), 201)
    good = ca.issue(["www.shop.example"])
    chain, key = good.chain, good.key
    if case == "mismatched key":
        key = key_pem(new_key())
    elif case == "expired":
        old = ca.issue(["www.shop.example"], days=1, starts=datetime.timedelta(days=-5))
        chain, key = old.chain, old.key
    elif case == "other hostnames":
        other = ca.issue(["www.other.example"])
        chain, key = other.chain, other.key
    elif case == "another app's hostname":
        other = ca.issue(["www.taken.example"])
        chain, key = other.chain, other.key
    else:
        chain = chain.replace("MI", "??", 1)
    with unchanged(api.database):
        error(upload(user, chain, key), 422, "invalid_params", *fragments)
    # An update with a bad certificate leaves the good one in place.
    created = ok(upload(user, good.chain, good.key), 201)
    with unchanged(api.database):
        reply = user.client.patch(
            f"/apps/shop/sni-endpoints/{created['name']}",
            json={"certificate_chain": chain, "private_key": key},
        )
        error(reply, 422, "invalid_params", *fragments)


def test_the_router_presents_the_most_specific_certificate(api: Api, ca: TestCA) -> None:
    user = api.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    for hostname in ("www.shop.example", "*.shop.example", "a.b.shop.example"):
        ok(user.client.post("/apps/shop/domains", json={"hostname": hostname}), 201)
    platform.prepare(api.database, api.settings)
    wildcard = ok(upload(user, *_pair(ca, ["*.shop.example"])), 201)
    exact = ok(upload(user, *_pair(ca, ["www.shop.example", "a.b.shop.example"])), 201)

    table = read_table(api.database, api.settings)
    default, *others = table.certificates
    assert default.name == certs.DEFAULT_NAME
    assert default.hostnames == ()
    chain, marker, key = default.pem.partition("-----BEGIN PRIVATE KEY-----")
    assert certs.parse(chain, marker + key).hostnames == ("*.dockyard.test", "dockyard.test")
    served = {c.name: set(c.hostnames) for c in others}
    assert served == {
        exact["id"]: {"www.shop.example", "a.b.shop.example"},
        wildcard["id"]: {"*.shop.example"},
    }

    # Among certificates that name a hostname alike, the one that expires last.
    later = ca.issue(["*.shop.example", "www.shop.example"], days=120)
    both = ok(upload(user, later.chain, later.key), 201)
    served = {c.name: set(c.hostnames) for c in read_table(api.database, api.settings).certificates}
    assert served == {
        certs.DEFAULT_NAME: set(),
        both["id"]: {"*.shop.example", "www.shop.example"},
        exact["id"]: {"a.b.shop.example"},
    }


def test_https_only_and_the_local_ca(api: Api) -> None:
    user = api.user("owner@example.com")
    app = ok(user.client.post("/apps", json={"name": "shop"}), 201)
    assert app["https_only"] is False
    assert ok(user.client.patch("/apps/shop", json={"https_only": True}))["https_only"] is True
    (route,) = read_table(api.database, api.settings).apps
    assert route.https_only

    error(api.anonymous.get("/tls/ca"), 404, "not_found", "local CA")
    made = platform.prepare(api.database, api.settings)
    assert made.ca_path is not None
    reply = api.anonymous.get("/tls/ca")
    assert reply.status_code == 200
    assert reply.text.startswith("-----BEGIN CERTIFICATE-----")
    assert reply.headers["content-type"].startswith("application/x-pem-file")


def _pair(ca: TestCA, hostnames: list[str]) -> tuple[str, str]:
    issued = ca.issue(hostnames)
    return issued.chain, issued.key


def test_destroying_an_app_forgets_its_certificates(api: Api, ca: TestCA) -> None:
    user = api.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    ok(upload(user, *_pair(ca, ["shop.dockyard.test"])), 201)
    ok(user.client.delete("/apps/shop"))
    with api.database.transaction() as session:
        assert session.scalars(select(certs.Certificate)).all() == []


def test_a_domain_associated_with_a_certificate_is_served_by_it(api: Api, ca: TestCA) -> None:
    """Heroku's Domain Update: PATCH /apps/{app}/domains/{domain} {"sni_endpoint": ...}."""
    user = api.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    ok(user.client.post("/apps", json={"name": "other"}), 201)
    for hostname in ("www.shop.example", "api.shop.example"):
        ok(user.client.post("/apps/shop/domains", json={"hostname": hostname}), 201)
    exact = ok(upload(user, *_pair(ca, ["www.shop.example", "api.shop.example"])), 201)
    wildcard = ok(upload(user, *_pair(ca, ["*.shop.example"])), 201)
    ok(user.client.post("/apps/other/domains", json={"hostname": "other.example"}), 201)
    theirs = ok(upload(user, *_pair(ca, ["other.example"]), app="other"), 201)
    assert ok(user.client.get("/apps/shop/domains/www.shop.example"))["sni_endpoint"] is None

    def served() -> dict[str, set[str]]:
        table = read_table(api.database, api.settings)
        return {c.name: set(c.hostnames) for c in table.certificates if c.name != theirs["id"]}

    # By default the exact certificate serves both; associated, the wildcard serves www.
    assert served() == {exact["id"]: {"www.shop.example", "api.shop.example"}}
    patched = ok(
        user.client.patch(
            "/apps/shop/domains/www.shop.example", json={"sni_endpoint": wildcard["name"]}
        )
    )
    assert patched["sni_endpoint"] == {"id": wildcard["id"], "name": wildcard["name"]}
    assert patched["hostname"] == "www.shop.example"
    listed = {d["hostname"]: d for d in ok(user.client.get("/apps/shop/domains"))}
    assert listed["www.shop.example"]["sni_endpoint"] == patched["sni_endpoint"]
    assert listed["api.shop.example"]["sni_endpoint"] is None
    assert served() == {
        exact["id"]: {"api.shop.example"},
        wildcard["id"]: {"www.shop.example"},
    }

    # By id too, for domain and endpoint; null undoes it.
    www_id = patched["id"]
    again = ok(
        user.client.patch(f"/apps/shop/domains/{www_id}", json={"sni_endpoint": exact["id"]})
    )
    assert again["sni_endpoint"] == {"id": exact["id"], "name": exact["name"]}
    undone = ok(user.client.patch(f"/apps/shop/domains/{www_id}", json={"sni_endpoint": None}))
    assert undone["sni_endpoint"] is None
    assert served() == {exact["id"]: {"www.shop.example", "api.shop.example"}}

    # Refused, saying why, with nothing written.
    with unchanged(api.database):
        for domain, body, status, fragment in (
            (
                "www.shop.example",
                {"sni_endpoint": theirs["name"]},
                422,
                "not an SNI endpoint of shop",
            ),
            (
                "www.shop.example",
                {"sni_endpoint": "sloop-1"},
                422,
                "sloop-1 is not an SNI endpoint",
            ),
            ("shop.dockyard.test", {"sni_endpoint": exact["name"]}, 422, "default hostname"),
            ("nosuch.example", {"sni_endpoint": exact["name"]}, 404, "Couldn't find that domain"),
            ("www.shop.example", {}, 422, "sni_endpoint"),
        ):
            reply = user.client.patch(f"/apps/shop/domains/{domain}", json=body)
            assert reply.status_code == status, reply.text
            assert fragment in reply.json()["message"], reply.text
    # The apex: the wildcard does not cover it.
    ok(user.client.post("/apps/shop/domains", json={"hostname": "shop.example"}), 201)
    error(
        user.client.patch("/apps/shop/domains/shop.example", json={"sni_endpoint": wildcard["id"]}),
        422,
        "invalid_params",
        f"the certificate {wildcard['name']} does not cover shop.example",
        "*.shop.example",
    )

    # Added with an endpoint (heroku domains:add --cert): associated at once; a bad one
    # leaves no domain behind.
    added = ok(
        user.client.post(
            "/apps/shop/domains",
            json={"hostname": "shop2.shop.example", "sni_endpoint": wildcard["name"]},
        ),
        201,
    )
    assert added["sni_endpoint"]["name"] == wildcard["name"]
    with unchanged(api.database):
        error(
            user.client.post(
                "/apps/shop/domains",
                json={"hostname": "www2.shop.example", "sni_endpoint": exact["name"]},
            ),
            422,
            "invalid_params",
            "does not cover www2.shop.example",
        )

    # A renewal that no longer names the hostname drops the association; removing the
    # certificate drops it too, and the next best certificate serves the domain.
    ok(user.client.patch("/apps/shop/domains/www.shop.example", json={"sni_endpoint": exact["id"]}))
    ok(user.client.patch("/apps/shop/domains/api.shop.example", json={"sni_endpoint": exact["id"]}))
    chain, key = _pair(ca, ["api.shop.example"])
    ok(
        user.client.patch(
            f"/apps/shop/sni-endpoints/{exact['name']}",
            json={"certificate_chain": chain, "private_key": key},
        )
    )
    listed = {d["hostname"]: d for d in ok(user.client.get("/apps/shop/domains"))}
    assert listed["www.shop.example"]["sni_endpoint"] is None
    assert listed["api.shop.example"]["sni_endpoint"]["id"] == exact["id"]
    ok(user.client.delete(f"/apps/shop/sni-endpoints/{exact['name']}"))
    assert ok(user.client.get("/apps/shop/domains/api.shop.example"))["sni_endpoint"] is None
    assert served()[wildcard["id"]] >= {"www.shop.example", "api.shop.example"}

    # An app with associated domains is destroyed with its certificates.
    www = "/apps/shop/domains/www.shop.example"
    ok(user.client.patch(www, json={"sni_endpoint": wildcard["name"]}))
    ok(user.client.delete("/apps/shop"))
    with api.database.transaction() as session:
        assert session.scalars(select(certs.Certificate.name)).all() == [theirs["name"]]
