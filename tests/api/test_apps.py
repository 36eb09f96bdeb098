"""``/apps``, ``/users/~/apps`` and ``/apps/{app}/collaborators``: who sees and changes what."""

from __future__ import annotations

import re
import uuid

import pytest

from api.checks import error, ok, unchanged
from conftest import Api, ApiUser
from dockyard.apps import NAME

LISTINGS = ("/apps", "/users/~/apps")


def create(user: ApiUser, name: str | None = None) -> dict[str, object]:
    body = {} if name is None else {"name": name}
    created: dict[str, object] = ok(user.client.post("/apps", json=body), 201)
    return created


def names(user: ApiUser, path: str = "/apps") -> list[str]:
    return [a["name"] for a in ok(user.client.get(path))]


# --- listing ----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", LISTINGS)
def test_listing_shows_each_user_their_own_shared_or_all_apps(api_on: Api, path: str) -> None:
    root = api_on.user("root@example.com", admin=True)
    alice = api_on.user("alice@example.com")
    bob = api_on.user("bob@example.com")
    carol = api_on.user("carol@example.com")
    create(alice, "alice-one")
    create(alice, "alice-two")
    create(bob, "bob-one")
    ok(alice.client.post("/apps/alice-two/collaborators", json={"user": "carol@example.com"}), 201)
    stranger = api_on.user("dave@example.com")

    assert names(root, path) == ["alice-one", "alice-two", "bob-one"]
    assert names(alice, path) == ["alice-one", "alice-two"]
    assert names(bob, path) == ["bob-one"]
    assert names(carol, path) == ["alice-two"]
    assert names(stranger, path) == []


# --- create -----------------------------------------------------------------------------------


def test_create_with_a_name_has_herokus_shape(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    app = create(alice, "my-app-1")
    assert app["name"] == "my-app-1"
    uuid.UUID(str(app["id"]))
    assert app["owner"] == {
        "id": ok(alice.client.get("/account"))["id"],
        "email": "alice@example.com",
    }
    assert app["stack"] == {"id": "dockyard-24", "name": "dockyard-24"}
    assert app["region"] == {"id": "local", "name": "local"}
    assert app["maintenance"] is False
    assert app["web_url"] == "http://my-app-1.dockyard.test:8080/"
    assert str(app["git_url"]).endswith("/my-app-1.git")
    for field in ("created_at", "updated_at", "released_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", str(app[field])), field
    assert ok(alice.client.get("/apps/my-app-1")) == app
    # A new app has its first release, with no config.
    releases = ok(alice.client.get("/apps/my-app-1/releases"))
    assert [(r["version"], r["description"], r["current"]) for r in releases] == [
        (1, "Initial release", True)
    ]
    assert ok(alice.client.get("/apps/my-app-1/config-vars")) == {}


def test_create_without_a_name_picks_a_free_valid_one(api: Api) -> None:
    alice = api.user("alice@example.com")
    first = create(alice)
    second = ok(alice.client.post("/apps"), 201)
    third = ok(alice.client.post("/apps", json={"region": "local", "stack": "dockyard-24"}), 201)
    made = {str(first["name"]), str(second["name"]), str(third["name"])}
    assert len(made) == 3
    assert all(NAME.match(name) for name in made)
    assert set(names(alice)) == made


@pytest.mark.parametrize(
    "name",
    [
        "ab",  # too short
        "a" * 31,  # too long
        "1app",  # starts with a digit
        "-app",
        "app-",  # ends with a dash
        "My-App",  # capitals
        "my_app",
        "my.app",
        "my app",
        "äpp",
        "",
    ],
)
def test_invalid_names_are_422_and_explain_the_rule(api: Api, name: str) -> None:
    alice = api.user("alice@example.com")
    with unchanged(api.database):
        reply = alice.client.post("/apps", json={"name": name})
    error(reply, 422, "invalid_params", "invalid", "lowercase", "3 to 30 characters")


def test_longest_and_shortest_valid_names(api: Api) -> None:
    alice = api.user("alice@example.com")
    create(alice, "a" * 30)
    create(alice, "a-0")


def test_taken_name_is_422_even_for_another_user(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    bob = api_on.user("bob@example.com")
    create(alice, "taken")
    with unchanged(api_on.database):
        mine = alice.client.post("/apps", json={"name": "taken"})
        theirs = bob.client.post("/apps", json={"name": "taken"})
    error(mine, 422, "invalid_params", "taken", "already taken")
    error(theirs, 422, "invalid_params", "already taken")


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "ok-name", "color": "red"}, "unknown field 'color'"),
        ({"name": 12345}, "name"),
        ({"name": "ok-name", "region": "eu"}, "region 'eu' does not exist"),
        ({"name": "ok-name", "region": "us"}, "the only region here is 'local'"),
        ({"name": "ok-name", "stack": "heroku-24"}, "the only stack here is 'dockyard-24'"),
        ([1, 2], "body"),
    ],
)
def test_create_rejects_bad_bodies_with_422(api: Api, body: object, says: str) -> None:
    alice = api.user("alice@example.com")
    with unchanged(api.database):
        reply = alice.client.post("/apps", json=body)
    error(reply, 422, "invalid_params", says)


def test_create_rejects_malformed_json_with_400(api: Api) -> None:
    alice = api.user("alice@example.com")
    with unchanged(api.database):
        reply = alice.client.post(
            "/apps", content=b'{"name": "x"', headers={"Content-Type": "application/json"}
        )
    error(reply, 400, "bad_request", "not valid JSON")


def test_create_reads_a_body_sent_without_a_json_content_type(api: Api) -> None:
    alice = api.user("alice@example.com")
    reply = alice.client.post(
        "/apps",
        content=b'{"name": "curl-made"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert ok(reply, 201)["name"] == "curl-made"


# --- one app: get, rename, maintenance, destroy --------------------------------------------------


def test_get_by_name_and_by_id(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    app = create(alice, "lookup")
    assert ok(alice.client.get(f"/apps/{app['id']}")) == app
    assert ok(alice.client.get("/apps/lookup")) == app
    error(alice.client.get("/apps/nothing-here"), 404, "not_found", "nothing-here", "dockyard apps")
    error(alice.client.get(f"/apps/{uuid.uuid4()}"), 404, "not_found")


def test_rename_and_maintenance(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    app = create(alice, "before")
    ok(alice.client.patch("/apps/before/config-vars", json={"KEEP": "me"}))
    renamed = ok(alice.client.patch("/apps/before", json={"name": "after"}))
    assert renamed["name"] == "after"
    assert renamed["id"] == app["id"]
    assert renamed["web_url"] == "http://after.dockyard.test:8080/"
    error(alice.client.get("/apps/before"), 404, "not_found")
    assert ok(alice.client.get("/apps/after/config-vars")) == {"KEEP": "me"}
    assert len(ok(alice.client.get("/apps/after/releases"))) == 2

    on = ok(alice.client.patch(f"/apps/{app['id']}", json={"maintenance": True}))
    assert on["maintenance"] is True
    assert ok(alice.client.get("/apps/after"))["maintenance"] is True
    off = ok(alice.client.patch("/apps/after", json={"maintenance": False}))
    assert off["maintenance"] is False
    # Renaming to its own name, or sending nothing to change, changes nothing.
    assert ok(alice.client.patch("/apps/after", json={"name": "after"}))["name"] == "after"
    assert ok(alice.client.patch("/apps/after", json={}))["name"] == "after"
    assert ok(alice.client.patch("/apps/after", json={"build_stack": "dockyard-24"}))


def test_update_failures_change_nothing(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    create(alice, "first")
    create(alice, "second")
    with unchanged(api_on.database):
        error(
            alice.client.patch("/apps/first", json={"name": "second"}),
            422,
            "invalid_params",
            "already taken",
        )
        error(
            alice.client.patch("/apps/first", json={"name": "Bad_Name"}),
            422,
            "invalid_params",
            "invalid",
        )
        error(
            alice.client.patch("/apps/first", json={"name": "ok-name", "maintenance": "maybe"}),
            422,
            "invalid_params",
            "maintenance",
        )
        error(
            alice.client.patch("/apps/first", json={"owner": "bob@example.com"}),
            422,
            "invalid_params",
            "unknown field 'owner'",
        )
        error(
            alice.client.patch("/apps/first", json={"build_stack": "heroku-22"}),
            422,
            "invalid_params",
            "build_stack",
        )
        error(alice.client.patch("/apps/first"), 422, "invalid_params", "JSON body is required")
        error(
            alice.client.patch(
                "/apps/first", content=b"{", headers={"Content-Type": "application/json"}
            ),
            400,
            "bad_request",
            "not valid JSON",
        )
        error(alice.client.patch("/apps/missing", json={"maintenance": True}), 404, "not_found")


def test_destroy_removes_the_app_and_all_it_holds(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    api_on.user("bob@example.com")
    app = create(alice, "doomed")
    ok(alice.client.patch("/apps/doomed/config-vars", json={"A": "1"}))
    ok(alice.client.post("/apps/doomed/collaborators", json={"user": "bob@example.com"}), 201)
    gone = ok(alice.client.delete(f"/apps/{app['id']}"))
    assert gone["name"] == "doomed"
    error(alice.client.get("/apps/doomed"), 404, "not_found")
    assert names(alice) == []
    error(alice.client.delete("/apps/doomed"), 404, "not_found")
    # The name is free again, and the new app starts from v1 with no config.
    create(alice, "doomed")
    assert ok(alice.client.get("/apps/doomed/config-vars")) == {}
    assert [r["version"] for r in ok(alice.client.get("/apps/doomed/releases"))] == [1]
    assert ok(alice.client.get("/apps/doomed/collaborators")) == []


def test_admin_may_change_any_app(api: Api) -> None:
    alice = api.user("alice@example.com")
    root = api.user("root@example.com", admin=True)
    create(alice, "alices")
    assert ok(root.client.get("/apps/alices"))["owner"]["email"] == "alice@example.com"
    ok(root.client.patch("/apps/alices", json={"name": "renamed-by-root"}))
    ok(root.client.patch("/apps/renamed-by-root/config-vars", json={"A": "1"}))
    ok(root.client.delete("/apps/renamed-by-root"))
    assert names(alice) == []


# --- collaborators ---------------------------------------------------------------------------


def test_collaborator_may_use_but_not_rename_or_destroy(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    bob = api_on.user("bob@example.com")
    create(alice, "shared")
    added = ok(
        alice.client.post("/apps/shared/collaborators", json={"user": "bob@example.com"}), 201
    )
    assert added["user"]["email"] == "bob@example.com"
    assert added["app"]["name"] == "shared"
    assert added["role"] == "collaborator"

    assert ok(bob.client.get("/apps/shared"))["name"] == "shared"
    assert ok(bob.client.patch("/apps/shared/config-vars", json={"A": "1"})) == {"A": "1"}
    release = ok(bob.client.get("/apps/shared/releases/2"))
    assert release["user"]["email"] == "bob@example.com"
    ok(bob.client.patch("/apps/shared", json={"maintenance": True}))

    with unchanged(api_on.database):
        error(
            bob.client.patch("/apps/shared", json={"name": "stolen"}),
            403,
            "forbidden",
            "only the owner",
            "alice@example.com",
            "rename",
        )
        error(bob.client.delete("/apps/shared"), 403, "forbidden", "only the owner", "destroy")
    api_on.user("carol@example.com")
    with unchanged(api_on.database):
        error(
            bob.client.post("/apps/shared/collaborators", json={"user": "carol@example.com"}),
            403,
            "forbidden",
            "only the owner",
        )
    assert ok(alice.client.get("/apps/shared"))["name"] == "shared"


def test_collaborators_list_get_and_remove(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    api_on.user("bob@example.com")
    api_on.user("carol@example.com")
    create(alice, "team")
    bob = ok(alice.client.post("/apps/team/collaborators", json={"user": "bob@example.com"}), 201)
    ok(
        alice.client.post(
            "/apps/team/collaborators", json={"user": "Carol@EXAMPLE.com", "silent": True}
        ),
        201,
    )
    listed = ok(alice.client.get("/apps/team/collaborators"))
    # Listings sort by id, as Heroku's do, and ids are random.
    assert sorted(c["user"]["email"] for c in listed) == ["bob@example.com", "carol@example.com"]
    assert ok(alice.client.get(f"/apps/team/collaborators/{bob['id']}"))["id"] == bob["id"]
    assert ok(alice.client.get("/apps/team/collaborators/bob@example.com"))["id"] == bob["id"]

    removed = ok(alice.client.delete("/apps/team/collaborators/bob@example.com"))
    assert removed["id"] == bob["id"]
    after = ok(alice.client.get("/apps/team/collaborators"))
    assert [c["user"]["email"] for c in after] == ["carol@example.com"]
    error(
        alice.client.delete("/apps/team/collaborators/bob@example.com"),
        404,
        "not_found",
        "not a collaborator",
        "dockyard access",
    )


def test_collaborator_failures_change_nothing(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    api_on.user("bob@example.com")
    create(alice, "team")
    ok(alice.client.post("/apps/team/collaborators", json={"user": "bob@example.com"}), 201)
    with unchanged(api_on.database):
        error(
            alice.client.post("/apps/team/collaborators", json={"user": "nobody@example.com"}),
            404,
            "not_found",
            "nobody@example.com",
            "admin:create-user",
        )
        error(
            alice.client.post("/apps/team/collaborators", json={"user": "bob@example.com"}),
            422,
            "invalid_params",
            "already a collaborator",
        )
        error(
            alice.client.post("/apps/team/collaborators", json={"user": "BOB@example.com"}),
            422,
            "invalid_params",
            "already a collaborator",
        )
        error(
            alice.client.post("/apps/team/collaborators", json={"user": "alice@example.com"}),
            422,
            "invalid_params",
            "owns team already",
        )
        error(alice.client.post("/apps/team/collaborators", json={}), 422, "invalid_params", "user")
        error(
            alice.client.post(
                "/apps/team/collaborators", json={"user": "bob@example.com", "role": "admin"}
            ),
            422,
            "invalid_params",
            "unknown field 'role'",
        )
        error(alice.client.get("/apps/team/collaborators/nobody@example.com"), 404, "not_found")


def test_collaborator_may_leave_but_not_remove_others(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    bob = api_on.user("bob@example.com")
    carol = api_on.user("carol@example.com")
    create(alice, "team")
    for email in ("bob@example.com", "carol@example.com"):
        ok(alice.client.post("/apps/team/collaborators", json={"user": email}), 201)
    with unchanged(api_on.database):
        error(
            bob.client.delete("/apps/team/collaborators/carol@example.com"),
            403,
            "forbidden",
            "only the owner",
            "remove other collaborators",
        )
    ok(bob.client.delete("/apps/team/collaborators/bob@example.com"))
    error(bob.client.get("/apps/team"), 404, "not_found")
    assert names(bob) == []
    assert names(carol) == ["team"]


# --- strangers --------------------------------------------------------------------------------


APP_ENDPOINTS = [
    ("GET", "/apps/{app}", None),
    ("PATCH", "/apps/{app}", {"maintenance": True}),
    ("PATCH", "/apps/{app}", {"name": "stolen"}),
    ("DELETE", "/apps/{app}", None),
    ("GET", "/apps/{app}/config-vars", None),
    ("PATCH", "/apps/{app}/config-vars", {"A": "1"}),
    ("GET", "/apps/{app}/releases", None),
    ("GET", "/apps/{app}/releases/1", None),
    ("GET", "/apps/{app}/releases/v1/config-vars", None),
    ("POST", "/apps/{app}/releases", {"release": "1"}),
    ("GET", "/apps/{app}/collaborators", None),
    ("GET", "/apps/{app}/collaborators/bob@example.com", None),
    ("POST", "/apps/{app}/collaborators", {"user": "mallory@example.com"}),
    ("DELETE", "/apps/{app}/collaborators/bob@example.com", None),
    ("GET", "/apps/{app}/addons", None),
]


def test_a_stranger_gets_404_for_everything_about_an_app(api_on: Api) -> None:
    alice = api_on.user("alice@example.com")
    api_on.user("bob@example.com")
    mallory = api_on.user("mallory@example.com")
    app = create(alice, "private")
    ok(alice.client.patch("/apps/private/config-vars", json={"SECRET": "s3cret"}))
    ok(alice.client.post("/apps/private/collaborators", json={"user": "bob@example.com"}), 201)
    for identity in ("private", str(app["id"])):
        for method, path, body in APP_ENDPOINTS:
            with unchanged(api_on.database):
                hidden = mallory.client.request(method, path.format(app=identity), json=body)
                missing = mallory.client.request(method, path.format(app="absent"), json=body)
            message = error(hidden, 404, "not_found", identity)
            # Exactly as if the app did not exist: nothing tells the two apart.
            assert message.replace(identity, "absent") == missing.json()["message"], (method, path)
            assert "s3cret" not in hidden.text
    assert names(mallory) == []
