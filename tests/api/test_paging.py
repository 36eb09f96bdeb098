"""Heroku's ``Range`` paging on listings: ``206`` and ``Next-Range`` until the last page."""

from __future__ import annotations

import pytest

from api.checks import error, ok, unchanged
from conftest import Api, ApiUser


@pytest.fixture
def owner(api: Api) -> ApiUser:
    """An app ``paged`` with releases v1 to v5."""
    user = api.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "paged"}), 201)
    for step in range(2, 6):
        ok(user.client.patch("/apps/paged/config-vars", json={"STEP": str(step)}))
    return user


def versions(reply: object) -> list[int]:
    return [r["version"] for r in reply.json()]  # type: ignore[attr-defined]


def test_no_range_returns_everything_ascending(owner: ApiUser) -> None:
    reply = owner.client.get("/apps/paged/releases")
    assert reply.status_code == 200
    assert versions(reply) == [1, 2, 3, 4, 5]
    assert "next-range" not in reply.headers
    assert reply.headers["content-range"] == "version 1..5"
    assert "version" in reply.headers["accept-ranges"]


def test_following_next_range_walks_every_page_once(owner: ApiUser) -> None:
    seen: list[int] = []
    header = "version ..; max=2, order=desc"
    statuses = []
    for _ in range(10):
        reply = owner.client.get("/apps/paged/releases", headers={"Range": header})
        statuses.append(reply.status_code)
        seen.extend(versions(reply))
        if "next-range" not in reply.headers:
            break
        header = reply.headers["next-range"]
    assert seen == [5, 4, 3, 2, 1]
    assert statuses == [206, 206, 200]


def test_first_page_headers(owner: ApiUser) -> None:
    reply = owner.client.get(
        "/apps/paged/releases", headers={"Range": "version ..; max=2, order=desc"}
    )
    assert reply.status_code == 206
    assert versions(reply) == [5, 4]
    assert reply.headers["next-range"] == "version ]4..; max=2, order=desc"
    assert reply.headers["content-range"] == "version 5..4"


def test_a_page_that_ends_exactly_at_the_last_item_has_no_next_range(owner: ApiUser) -> None:
    reply = owner.client.get("/apps/paged/releases", headers={"Range": "version ..; max=5"})
    assert reply.status_code == 200
    assert versions(reply) == [1, 2, 3, 4, 5]
    assert "next-range" not in reply.headers


@pytest.mark.parametrize(
    ("header", "expected", "status"),
    [
        # What the Heroku CLI sends for `releases` and `releases -n 15`, byte for byte.
        ("version ..; order=desc,max=1", [5], 206),
        ("version ..; max=15, order=desc", [5, 4, 3, 2, 1], 200),
        ("version 2..4; max=10", [2, 3, 4], 200),
        ("version ]2..; max=10", [3, 4, 5], 200),
        ("version 4..; max=10, order=desc", [4, 3, 2, 1], 200),
        ("version ..3", [1, 2, 3], 200),
        ("version", [1, 2, 3, 4, 5], 200),
        ("version ..; max=1000", [1, 2, 3, 4, 5], 200),
    ],
)
def test_range_forms(owner: ApiUser, header: str, expected: list[int], status: int) -> None:
    reply = owner.client.get("/apps/paged/releases", headers={"Range": header})
    assert reply.status_code == status
    assert versions(reply) == expected


def test_paging_apps_by_name(api: Api) -> None:
    alice = api.user("alice@example.com")
    for name in ("app-c", "app-a", "app-b"):
        ok(alice.client.post("/apps", json={"name": name}), 201)
    first = alice.client.get("/apps", headers={"Range": "name ..; max=2"})
    assert first.status_code == 206
    assert [a["name"] for a in first.json()] == ["app-a", "app-b"]
    rest = alice.client.get("/apps", headers={"Range": first.headers["next-range"]})
    assert rest.status_code == 200
    assert [a["name"] for a in rest.json()] == ["app-c"]
    assert "next-range" not in rest.headers
    by_id = alice.client.get("/apps", headers={"Range": "id ..; max=1"})
    assert by_id.status_code == 206
    assert by_id.headers["next-range"].startswith(f"id ]{by_id.json()[0]['id']}..")


@pytest.mark.parametrize(
    "header",
    [
        "name ..; max=2",  # not a field releases sort by
        "version ..; max=0",
        "version ..; max=1001",
        "version ..; max=abc",
        "version ..; order=sideways",
        "version ..; limit=5",
        "..; max=2",
        "; max=2",
        "Version ..",
    ],
)
def test_a_bad_range_is_400_saying_what_works(owner: ApiUser, api: Api, header: str) -> None:
    with unchanged(api.database):
        reply = owner.client.get("/apps/paged/releases", headers={"Range": header})
    message = error(reply, 400, "bad_request")
    assert "max=" in message or "version" in message


@pytest.mark.parametrize(
    "path",
    [
        "/apps",
        "/users/~/apps",
        "/account/keys",
        "/oauth/authorizations",
        "/apps/paged/collaborators",
    ],
)
def test_every_listing_understands_range(owner: ApiUser, path: str) -> None:
    field = {
        "/account/keys": "id",
        "/oauth/authorizations": "id",
        "/apps/paged/collaborators": "id",
    }.get(path, "name")
    assert owner.client.get(path, headers={"Range": f"{field} ..; max=1"}).status_code in (200, 206)
    error(owner.client.get(path, headers={"Range": "nonsense ..; max=1"}), 400, "bad_request")
