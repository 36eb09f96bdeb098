"""Config vars and releases: ``/apps/{app}/config-vars`` and ``/apps/{app}/releases``."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from api.checks import error, ok, unchanged
from conftest import Api, ApiUser
from dockyard.releases import CONFIG_LIMIT


@pytest.fixture
def owner(api_on: Api) -> ApiUser:
    user = api_on.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "web"}), 201)
    return user


def releases(user: ApiUser, app: str = "web") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = ok(user.client.get(f"/apps/{app}/releases"))
    return found


def described(user: ApiUser) -> list[tuple[int, str]]:
    return [(r["version"], r["description"]) for r in releases(user)]


# --- config vars -------------------------------------------------------------------------------


def test_set_and_unset_make_releases_described_like_heroku(owner: ApiUser) -> None:
    client = owner.client
    assert ok(client.patch("/apps/web/config-vars", json={"A": "1", "B": "two words"})) == {
        "A": "1",
        "B": "two words",
    }
    assert ok(client.patch("/apps/web/config-vars", json={"A": None})) == {"B": "two words"}
    assert ok(client.patch("/apps/web/config-vars", json={"C": "=x=", "B": None})) == {"C": "=x="}
    assert ok(client.get("/apps/web/config-vars")) == {"C": "=x="}
    assert described(owner) == [
        (1, "Initial release"),
        (2, "Set A, B config vars"),
        (3, "Remove A config vars"),
        (4, "Set C; remove B config vars"),
    ]
    newest = releases(owner)[-1]
    assert newest["current"] is True
    assert newest["user"]["email"] == "owner@example.com"
    assert newest["status"] == "succeeded"
    assert [r["current"] for r in releases(owner)] == [False, False, False, True]


def test_values_keep_unicode_newlines_and_empty_strings(owner: ApiUser) -> None:
    values = {"EMPTY": "", "MULTI": "line one\nline two", "UNI": "héllo ⬢", "lower_ok": "x"}
    assert ok(owner.client.patch("/apps/web/config-vars", json=values)) == values
    assert ok(owner.client.get("/apps/web/config-vars")) == values
    assert ok(owner.client.get("/apps/web/releases/2/config-vars")) == values


def test_a_patch_that_changes_nothing_makes_no_release(owner: ApiUser, api_on: Api) -> None:
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "1"}))
    with unchanged(api_on.database):
        assert ok(owner.client.patch("/apps/web/config-vars", json={"A": "1"})) == {"A": "1"}
        assert ok(owner.client.patch("/apps/web/config-vars", json={"GONE": None})) == {"A": "1"}
        assert ok(owner.client.patch("/apps/web/config-vars", json={})) == {"A": "1"}
    assert [v for v, _ in described(owner)] == [1, 2]


def test_only_changed_names_are_described(owner: ApiUser) -> None:
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "1", "B": "2"}))
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "1", "B": "3", "GONE": None}))
    assert described(owner)[-1] == (3, "Set B config vars")


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        ({"BAD-NAME": "x"}, 422, "'BAD-NAME' is invalid"),
        ({"1ST": "x"}, 422, "not starting with a digit"),
        ({"HAS SPACE": "x"}, 422, "letters, digits and underscores"),
        ({"": "x"}, 422, "invalid"),
        ({"ÄPFEL": "x"}, 422, "invalid"),
        ({"N" * 256: "x"}, 422, "invalid"),
        ({"PORT": "80"}, 422, "PORT is set by the platform"),
        ({"NUM": 1}, 422, "must be a string"),
        ({"FLAG": True}, 422, "must be a string"),
        ({"LIST": ["a"]}, 422, "must be a string"),
        ({"OBJ": {"a": "b"}}, 422, "must be a string"),
        ({"NUL": "a\u0000b"}, 422, "NUL"),
        ({"GOOD": "x", "BAD-ONE": "y"}, 422, "BAD-ONE"),
        (["A", "B"], 422, "body"),
        ("A=1", 422, "body"),
    ],
)
def test_bad_config_changes_are_rejected_whole(
    owner: ApiUser, api_on: Api, body: object, status: int, says: str
) -> None:
    ok(owner.client.patch("/apps/web/config-vars", json={"KEEP": "1"}))
    with unchanged(api_on.database):
        reply = owner.client.patch("/apps/web/config-vars", json=body)
    error(reply, status, "invalid_params", says)
    assert ok(owner.client.get("/apps/web/config-vars")) == {"KEEP": "1"}


def test_malformed_config_json_is_400(owner: ApiUser, api_on: Api) -> None:
    with unchanged(api_on.database):
        reply = owner.client.patch(
            "/apps/web/config-vars",
            content=b'{"A": "1",}',
            headers={"Content-Type": "application/json"},
        )
    error(reply, 400, "bad_request", "not valid JSON")


def test_config_over_32_kb_in_total_is_422_and_makes_no_release(
    owner: ApiUser, api_on: Api
) -> None:
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "x" * 20_000}))
    with unchanged(api_on.database):
        reply = owner.client.patch("/apps/web/config-vars", json={"B": "y" * 13_000})
    error(reply, 422, "invalid_params", "32 kB", str(CONFIG_LIMIT))
    assert [v for v, _ in described(owner)] == [1, 2]
    # Exactly at the limit is fine; one byte more is not.
    at_limit = {"A": None, "B": "y" * (CONFIG_LIMIT - 1)}
    assert ok(owner.client.patch("/apps/web/config-vars", json=at_limit)) == {"B": at_limit["B"]}
    with unchanged(api_on.database):
        error(owner.client.patch("/apps/web/config-vars", json={"C": ""}), 422, "invalid_params")
    # Shrinking a config that is at the limit is allowed.
    ok(owner.client.patch("/apps/web/config-vars", json={"B": "small"}))


def test_config_size_counts_bytes_not_characters(owner: ApiUser) -> None:
    # "⬢" is three bytes in UTF-8: under the limit in characters, over it in bytes.
    value = "⬢" * (CONFIG_LIMIT // 3 + 1)
    assert len(value) < CONFIG_LIMIT
    reply = owner.client.patch("/apps/web/config-vars", json={"X": value})
    error(reply, 422, "invalid_params", "32 kB")


# --- releases --------------------------------------------------------------------------------


def test_release_by_id_by_number_and_by_vn(owner: ApiUser) -> None:
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "1"}))
    second = releases(owner)[1]
    assert second["version"] == 2
    assert second["app"]["name"] == "web"
    assert second["slug"] is None
    for identity in (second["id"], "2", "v2"):
        assert ok(owner.client.get(f"/apps/web/releases/{identity}")) == second
    for identity in ("3", "v3", "0", "-1", "vv2", "latest", str(uuid.uuid4())):
        error(
            owner.client.get(f"/apps/web/releases/{identity}"),
            404,
            "not_found",
            identity,
            "dockyard releases",
        )


def test_release_config_vars_are_a_snapshot(owner: ApiUser) -> None:
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "1"}))
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "2", "B": "b"}))
    second_id = releases(owner)[1]["id"]
    assert ok(owner.client.get("/apps/web/releases/1/config-vars")) == {}
    assert ok(owner.client.get("/apps/web/releases/v2/config-vars")) == {"A": "1"}
    assert ok(owner.client.get(f"/apps/web/releases/{second_id}/config-vars")) == {"A": "1"}
    assert ok(owner.client.get("/apps/web/releases/3/config-vars")) == {"A": "2", "B": "b"}
    error(owner.client.get("/apps/web/releases/9/config-vars"), 404, "not_found")


def test_rollback_restores_config_in_a_new_release(owner: ApiUser) -> None:
    client = owner.client
    ok(client.patch("/apps/web/config-vars", json={"STEP": "one", "OLD": "yes"}))
    ok(client.patch("/apps/web/config-vars", json={"STEP": "two", "OLD": None, "NEW": "yes"}))
    target = releases(owner)[1]

    back = ok(client.post("/apps/web/releases", json={"release": target["id"]}), 201)
    assert back["version"] == 4
    assert back["description"] == "Rollback to v2"
    assert back["current"] is True
    assert back["user"]["email"] == "owner@example.com"
    assert ok(client.get("/apps/web/config-vars")) == {"STEP": "one", "OLD": "yes"}
    assert ok(client.get("/apps/web/releases/4/config-vars")) == {"STEP": "one", "OLD": "yes"}
    assert [r["current"] for r in releases(owner)] == [False, False, False, True]

    for identity in ("v3", "1"):
        ok(client.post("/apps/web/releases", json={"release": identity}), 201)
    assert described(owner)[-2:] == [(5, "Rollback to v3"), (6, "Rollback to v1")]
    assert ok(client.get("/apps/web/config-vars")) == {}
    # The releases rolled back from are kept as they were.
    assert ok(client.get("/apps/web/releases/3/config-vars")) == {"STEP": "two", "NEW": "yes"}


def test_rollback_takes_a_version_number_as_herokus_schema_allows(owner: ApiUser) -> None:
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "1"}))
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "2"}))
    back = ok(owner.client.post("/apps/web/releases", json={"release": 2}), 201)
    assert back["description"] == "Rollback to v2"
    assert ok(owner.client.get("/apps/web/config-vars")) == {"A": "1"}


def test_rollback_failures_change_nothing(owner: ApiUser, api_on: Api) -> None:
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "1"}))
    with unchanged(api_on.database):
        error(
            owner.client.post("/apps/web/releases", json={"release": "v9"}), 404, "not_found", "v9"
        )
        error(
            owner.client.post("/apps/web/releases", json={"release": str(uuid.uuid4())}),
            404,
            "not_found",
        )
        error(owner.client.post("/apps/web/releases", json={}), 422, "invalid_params", "release")
        error(
            owner.client.post("/apps/web/releases", json={"release": "1", "slug": "x"}),
            422,
            "invalid_params",
            "unknown field 'slug'",
        )
        error(
            owner.client.post("/apps/web/releases", json={"release": None}),
            422,
            "invalid_params",
            "release",
        )
        error(
            owner.client.post("/apps/web/releases", json={"release": True}),
            422,
            "invalid_params",
            "release",
        )
        error(
            owner.client.post("/apps/missing/releases", json={"release": "1"}),
            404,
            "not_found",
            "missing",
        )


def test_collaborator_sees_releases_and_may_roll_back(api_on: Api, owner: ApiUser) -> None:
    bob = api_on.user("bob@example.com")
    ok(owner.client.post("/apps/web/collaborators", json={"user": "bob@example.com"}), 201)
    ok(owner.client.patch("/apps/web/config-vars", json={"A": "1"}))
    assert [r["version"] for r in releases(bob)] == [1, 2]
    back = ok(bob.client.post("/apps/web/releases", json={"release": "1"}), 201)
    assert back["user"]["email"] == "bob@example.com"


def test_another_apps_release_is_not_found_here(owner: ApiUser, api_on: Api) -> None:
    ok(owner.client.post("/apps", json={"name": "other"}), 201)
    foreign = releases(owner, "other")[0]["id"]
    with unchanged(api_on.database):
        error(owner.client.get(f"/apps/web/releases/{foreign}"), 404, "not_found")
        error(owner.client.get(f"/apps/web/releases/{foreign}/config-vars"), 404, "not_found")
        error(owner.client.post("/apps/web/releases", json={"release": foreign}), 404, "not_found")
