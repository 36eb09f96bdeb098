"""``/apps/{app}/formation``: Heroku's shape, scaling all or nothing, who may scale.

Process types come from a slug, so most tests set them up with :func:`formation.sync`, as a
build does; one test goes through a (faked) build to see the build call it.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.checks import error, ok, unchanged
from conftest import Api, ApiUser
from dockyard import formation
from dockyard.build.appjson import AppJson
from dockyard.build.pipeline import Job, Result
from dockyard.build.slug import Packed
from dockyard.builds import BuildService
from dockyard.store import App, Build, User

TYPES = {"web": "gunicorn app:app", "worker": "python worker.py"}


@pytest.fixture
def owner(api_on: Api) -> ApiUser:
    user = api_on.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    return user


def deploy(api: Api, types: dict[str, str], defaults: dict[str, Any] | None = None) -> None:
    """What a build does with a new slug's process types."""
    with api.database.transaction() as session:
        app = session.scalars(select(App).where(App.name == "shop")).one()
        formation.sync(session, app, types, defaults, limit=api.settings.max_quantity)


def scaled(user: ApiUser) -> dict[str, tuple[int, str]]:
    return {
        f["type"]: (f["quantity"], f["size"]) for f in ok(user.client.get("/apps/shop/formation"))
    }


def test_formation_has_herokus_shape(api_on: Api, owner: ApiUser) -> None:
    assert ok(owner.client.get("/apps/shop/formation")) == []
    deploy(api_on, TYPES)
    listed = ok(owner.client.get("/apps/shop/formation"))
    assert [f["type"] for f in listed] == ["web", "worker"]
    web = listed[0]
    app = ok(owner.client.get("/apps/shop"))
    assert set(web) == {
        "id", "app", "type", "command", "quantity", "size", "dyno_size", "created_at", "updated_at",
    }  # fmt: skip
    uuid.UUID(web["id"])
    assert web["app"] == {"id": app["id"], "name": "shop"}
    assert (web["command"], web["quantity"], web["size"]) == ("gunicorn app:app", 1, "Standard-1X")
    assert web["dyno_size"]["name"] == "Standard-1X"
    assert web["created_at"].endswith("Z")
    assert listed[1]["quantity"] == 0
    assert ok(owner.client.get("/apps/shop/formation/worker")) == listed[1]
    assert ok(owner.client.get(f"/apps/shop/formation/{web['id']}")) == web
    assert ok(owner.client.get(f"/apps/{app['id']}/formation/web")) == web


def test_listing_pages_by_type(api_on: Api, owner: ApiUser) -> None:
    deploy(api_on, {f"t{n}": "x" for n in range(5)})
    response = owner.client.get("/apps/shop/formation", headers={"Range": "type ..; max=2"})
    assert response.status_code == 206
    assert [f["type"] for f in response.json()] == ["t0", "t1"]
    following = owner.client.get(
        "/apps/shop/formation", headers={"Range": response.headers["Next-Range"]}
    )
    assert [f["type"] for f in following.json()] == ["t2", "t3"]


def test_batch_update_as_the_heroku_cli_sends_it(api_on: Api, owner: ApiUser) -> None:
    deploy(api_on, TYPES)
    before = ok(owner.client.get("/apps/shop/formation/web"))
    changed = ok(
        owner.client.patch(
            "/apps/shop/formation",
            json={"updates": [
                {"type": "worker", "quantity": "+2"},
                {"type": "web", "quantity": "3", "size": "standard-2x"},
            ]},
        )
    )  # fmt: skip
    assert [(f["type"], f["quantity"], f["size"]) for f in changed] == [
        ("worker", 2, "Standard-1X"),
        ("web", 3, "Standard-2X"),
    ]
    assert changed[1]["updated_at"] >= before["updated_at"]
    ok(
        owner.client.patch(
            "/apps/shop/formation", json={"updates": [{"type": "web", "quantity": "-1"}]}
        )
    )
    ok(
        owner.client.patch(
            "/apps/shop/formation", json={"updates": [{"type": "worker", "quantity": 0}]}
        )
    )
    assert scaled(owner) == {"web": (2, "Standard-2X"), "worker": (0, "Standard-1X")}


def test_update_one_type(api_on: Api, owner: ApiUser) -> None:
    deploy(api_on, TYPES)
    web = ok(owner.client.patch("/apps/shop/formation/web", json={"quantity": 4}))
    assert (web["type"], web["quantity"], web["size"]) == ("web", 4, "Standard-1X")
    worker_id = ok(owner.client.get("/apps/shop/formation/worker"))["id"]
    worker = ok(owner.client.patch(f"/apps/shop/formation/{worker_id}", json={"size": "Basic"}))
    assert (worker["type"], worker["quantity"], worker["size"]) == ("worker", 0, "Basic")
    assert ok(owner.client.patch("/apps/shop/formation/web", json={})) == ok(
        owner.client.get("/apps/shop/formation/web")
    )


@pytest.mark.parametrize(
    ("updates", "says"),
    [
        ([{"type": "wrker", "quantity": 1}], ["no process type 'wrker'", "web, worker"]),
        ([{"type": "web", "quantity": -1}], ["below 0"]),
        ([{"type": "web", "quantity": "-2"}], ["below 0 (asked for -1)"]),
        ([{"type": "web", "quantity": 101}], ["above 100 dynos", "DOCKYARD_MAX_QUANTITY"]),
        ([{"type": "web", "quantity": "lots"}], ["whole number"]),
        ([{"type": "web", "size": "huge"}], ["'huge' is not a dyno size", "performance-l"]),
        ([{"type": "web", "quantity": 1}, {"type": "web", "quantity": 2}], ["more than once"]),
        ([{"type": "release", "quantity": 1}], ["release phase"]),
    ],
)
def test_bad_updates_change_nothing(
    api_on: Api, owner: ApiUser, updates: list[dict[str, Any]], says: list[str]
) -> None:
    deploy(api_on, TYPES)
    # The first update is good; all or nothing means it is not applied either.
    body = {"updates": [{"type": "worker", "quantity": 5}, *updates]}
    with unchanged(api_on.database):
        error(owner.client.patch("/apps/shop/formation", json=body), 422, "invalid_params", *says)


@pytest.mark.parametrize(
    "body",
    [{"quantity": 1.5}, {"quantity": True}, {"size": 2}, {"quantity": 1, "type": "x"}, []],
)
def test_malformed_bodies_are_refused(api_on: Api, owner: ApiUser, body: Any) -> None:
    deploy(api_on, TYPES)
    with unchanged(api_on.database):
        error(owner.client.patch("/apps/shop/formation/web", json=body), 422, "invalid_params")
        error(
            owner.client.patch("/apps/shop/formation", json={"updates": [body]}),
            422,
            "invalid_params",
        )
        error(owner.client.patch("/apps/shop/formation", json={"web": 1}), 422, "invalid_params")


def test_unknown_types(api_on: Api, owner: ApiUser) -> None:
    error(owner.client.get("/apps/shop/formation/web"), 404, "not_found", "no process types yet")
    error(
        owner.client.patch("/apps/shop/formation/web", json={"quantity": 1}),
        422, "invalid_params", "shop has no process types yet",
    )  # fmt: skip
    deploy(api_on, TYPES)
    error(owner.client.get("/apps/shop/formation/clock"), 404, "not_found", "web, worker")
    error(
        owner.client.patch("/apps/shop/formation/clock", json={"quantity": 1}),
        422, "invalid_params", "no process type 'clock'", "web, worker",
    )  # fmt: skip


def test_the_cap_is_a_setting(owner: ApiUser, api_on: Api) -> None:
    capped = Api(api_on.settings.model_copy(update={"max_quantity": 3}), api_on.database)
    deploy(capped, TYPES)
    client = TestClient(capped.app, headers=dict(owner.client.headers))
    ok(client.patch("/apps/shop/formation/web", json={"quantity": 3}))
    response = client.patch("/apps/shop/formation/web", json={"quantity": "+1"})
    error(response, 422, "invalid_params", "above 3 dynos")


def test_a_formation_the_node_cannot_fit_is_refused_whole(owner: ApiUser, api_on: Api) -> None:
    small = Api(api_on.settings.model_copy(update={"node_memory_mb": 2048}), api_on.database)
    deploy(small, TYPES)
    client = TestClient(small.app, headers=dict(owner.client.headers))
    ok(client.patch("/apps/shop/formation/web", json={"quantity": 4}))  # 4 x 512 MB: full
    with unchanged(api_on.database):
        error(
            client.patch("/apps/shop/formation/worker", json={"quantity": 1}),
            422, "invalid_params", "worker=1:Standard-1X does not fit", "2560 MB", "2048 MB",
        )  # fmt: skip
        body = {"updates": [{"type": "web", "quantity": 2, "size": "standard-2x"},
                            {"type": "worker", "quantity": 2}]}  # fmt: skip
        error(client.patch("/apps/shop/formation", json=body), 422, "invalid_params", "3072 MB")
    # Smaller sizes and fewer dynos always fit.
    ok(client.patch("/apps/shop/formation/web", json={"quantity": 2}))
    ok(client.patch("/apps/shop/formation/worker", json={"quantity": 2}))
    assert scaled(owner) == {"web": (2, "Standard-1X"), "worker": (2, "Standard-1X")}


def test_collaborators_scale_strangers_see_nothing(api_on: Api, owner: ApiUser) -> None:
    deploy(api_on, TYPES)
    helper = api_on.user("helper@example.com")
    stranger = api_on.user("stranger@example.com")
    ok(owner.client.post("/apps/shop/collaborators", json={"user": "helper@example.com"}), 201)
    ok(helper.client.patch("/apps/shop/formation/worker", json={"quantity": 2}))
    assert scaled(owner)["worker"] == (2, "Standard-1X")
    with unchanged(api_on.database):
        error(stranger.client.get("/apps/shop/formation"), 404, "not_found")
        error(
            stranger.client.patch("/apps/shop/formation/web", json={"quantity": 0}),
            404,
            "not_found",
        )
        body = {"updates": [{"type": "web", "quantity": 0}]}
        error(stranger.client.patch("/apps/shop/formation", json=body), 404, "not_found")
    error(api_on.anonymous.get("/apps/shop/formation"), 401, "unauthorized")


def test_destroying_the_app_removes_its_formation(api_on: Api, owner: ApiUser) -> None:
    deploy(api_on, TYPES)
    ok(owner.client.delete("/apps/shop"))
    with api_on.database.transaction() as session:
        assert session.scalars(select(formation.Formation)).all() == []


# --- the build's hook --------------------------------------------------------------------------


class FakeBuilder:
    """Gives each build the next of ``results`` instead of running buildpacks."""

    def __init__(self, slug_dir: Path) -> None:
        self.slug_dir = slug_dir
        self.results: list[tuple[dict[str, str], AppJson | None]] = []

    async def run(self, job: Job, emit: Any) -> Result:
        types, manifest = self.results.pop(0)
        path = self.slug_dir / f"{job.build_id}.tgz"
        path.write_bytes(job.build_id.encode())
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return Result(
            Packed(path, path.stat().st_size, digest), types, [], "Fake", app_json=manifest
        )


def build(api: Api, builder: FakeBuilder, source: Path) -> tuple[bool, list[str]]:
    service: BuildService = api.app.state.builds
    service.builder = builder  # type: ignore[assignment]
    with api.database.transaction() as session:
        app = session.scalars(select(App).where(App.name == "shop")).one()
        user = session.scalars(select(User)).first()
        app_id, user_id = app.id, user.id if user else None
    build_id = service.create(app_id, user_id, source_url=None, version="0123456789abcdef")
    succeeded = asyncio.run(service.run(build_id, source))
    lines = (service.outputs_dir / f"{build_id}.log").read_text().splitlines()
    return succeeded, lines


def test_builds_bring_their_process_types(api_on: Api, owner: ApiUser, tmp_path: Path) -> None:
    builder = FakeBuilder(tmp_path)
    source = tmp_path / "source.tar"
    source.write_bytes(b"")
    builder.results = [
        ({"web": "./web", "worker": "./work", "release": "./migrate"},
         AppJson(formation={"worker": {"quantity": 2, "size": "standard-2x"}})),
        ({"web": "./web2", "clock": "./clock"}, None),
        ({"web": "./web3"}, AppJson(formation={"web": {"size": "enormous"}})),
    ]  # fmt: skip
    assert build(api_on, builder, source)[0]
    assert scaled(owner) == {"web": (1, "Standard-1X"), "worker": (2, "Standard-2X")}

    ok(owner.client.patch("/apps/shop/formation/web", json={"quantity": 3}))
    assert build(api_on, builder, source)[0]
    assert scaled(owner) == {"clock": (0, "Standard-1X"), "web": (3, "Standard-1X")}
    assert ok(owner.client.get("/apps/shop/formation/web"))["command"] == "./web2"

    # A bad app.json formation fails the build, naming the problem; nothing changes.
    versions = len(ok(owner.client.get("/apps/shop/releases")))
    succeeded, lines = build(api_on, builder, source)
    assert not succeeded
    assert any("'enormous' is not a dyno size" in line for line in lines), lines
    assert len(ok(owner.client.get("/apps/shop/releases"))) == versions
    assert ok(owner.client.get("/apps/shop/formation/web"))["command"] == "./web2"
    with api_on.database.transaction() as session:
        statuses = [b.status for b in session.scalars(select(Build).order_by(Build.created_at))]
    assert statuses == ["succeeded", "succeeded", "failed"]

    # A rollback brings back that slug's process types, as Heroku does; scales stay.
    first = min(r["version"] for r in ok(owner.client.get("/apps/shop/releases")) if r["slug"])
    ok(owner.client.post("/apps/shop/releases", json={"release": str(first)}), 201)
    assert scaled(owner) == {"web": (3, "Standard-1X"), "worker": (2, "Standard-2X")}
    assert ok(owner.client.get("/apps/shop/formation/web"))["command"] == "./web"
    assert ok(owner.client.get("/apps/shop/formation/worker"))["command"] == "./work"
