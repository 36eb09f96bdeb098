"""Add-ons through the API: Heroku's shapes, attaching and detaching as releases, bad input,
failed provisioning, rotation, and what destroying an add-on or an app does.

The provider here is a third-party plugin registered on the same hook as the built-in ones
(``dockyard_addon_providers``); it keeps its "servers" in memory and can be told to fail.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import select

from api.checks import error, ok
from conftest import Api, ApiUser
from dockyard.addons import Data, Plan, Provider, Provisioning
from dockyard.build.appjson import AddonSpec
from dockyard.errors import AddonFailed, DockyardError, InvalidParams
from dockyard.plugins import hookimpl, manager
from dockyard.settings import Settings
from dockyard.store import App, Build, Database, Release, Slug

ADDON_FIELDS = {
    "id",
    "name",
    "addon_service",
    "plan",
    "app",
    "state",
    "provision_message",
    "config_vars",
    "actions",
    "billed_price",
    "billing_entity",
    "provider_id",
    "web_url",
    "created_at",
    "updated_at",
}


class Memory:
    """A provider whose resources are entries in a dict: enough to see what the core asks."""

    service = "memory"
    human_name = "Memory"
    description = "Entries in a dict"
    aliases: tuple[str, ...] = ("mem",)
    name_prefix = "memory"
    default_attachment = "MEMORY"
    config_var_suffixes: tuple[str, ...] = ("URL", "TOKEN")
    plans: Sequence[Plan] = (Plan("small", "Small", {"size": 1}), Plan("large", "Large"))
    option_names: tuple[str, ...] | None = None  # takes any option

    def __init__(self) -> None:
        self.made: dict[str, Data] = {}
        self.revoked: list[str] = []
        self.down = False

    def provision(self, request: Provisioning) -> Data:
        if self.down:
            raise AddonFailed("the memory server at 127.0.0.1:1 is unreachable: refused")
        token = secrets.token_hex(8)
        data: Data = {"id": request.addon_id, "token": token, "plan": request.plan.name}
        data["options"] = dict(request.options)
        self.made[request.addon_id] = data
        return data

    def deprovision(self, data: Mapping[str, Any]) -> None:
        if self.down:
            raise AddonFailed("the memory server at 127.0.0.1:1 is unreachable: refused")
        self.made.pop(str(data["id"]), None)

    def config_vars(self, data: Mapping[str, Any]) -> dict[str, str]:
        return {"URL": f"memory://{data['id']}", "TOKEN": str(data["token"])}

    def rotate(self, data: Mapping[str, Any]) -> Data:
        retired = [*data.get("retired", []), data["token"]]
        rotated = {**data, "token": secrets.token_hex(8), "retired": retired}
        self.made[str(data["id"])] = rotated
        return rotated

    def revoke(self, data: Mapping[str, Any]) -> Data:
        if self.down:
            raise AddonFailed("the memory server at 127.0.0.1:1 is unreachable: refused")
        self.revoked += data.get("retired", [])
        revoked = {**data, "retired": []}
        self.made[str(data["id"])] = revoked
        return revoked

    def change_plan(self, data: Mapping[str, Any], plan: Plan) -> Data:
        used = int(self.made.get(str(data["id"]), {}).get("used", 0))  # what the server holds
        if plan.limits.get("size", 100) < used:
            raise InvalidParams(f"too much data for the {plan.name} plan")
        changed = {**data, "plan": plan.name}
        self.made[str(data["id"])] = changed
        return changed

    def enforce(self, data: Mapping[str, Any]) -> Data:
        return dict(data)

    def info(self, data: Mapping[str, Any]) -> dict[str, str]:
        return {"Entries": "0"}

    def ensure_running(self, data: Mapping[str, Any]) -> None:
        pass


class Plugin:
    def __init__(self, provider: Memory) -> None:
        self.provider = provider

    @hookimpl
    def dockyard_addon_providers(self, settings: Settings) -> list[Provider]:
        return [self.provider]


@pytest.fixture
def memory() -> Iterator[Memory]:
    provider = Memory()
    plugin = Plugin(provider)
    manager().register(plugin)
    try:
        yield provider
    finally:
        manager().unregister(plugin)


@pytest.fixture
def addons_api(memory: Memory, settings: Settings, database: Database) -> Api:
    return Api(settings, database)


@pytest.fixture
def owner(addons_api: Api) -> ApiUser:
    user = addons_api.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "blog"}), 201)
    return user


def config(user: ApiUser, app: str) -> dict[str, str]:
    found: dict[str, str] = ok(user.client.get(f"/apps/{app}/config-vars"))
    return found


def current(user: ApiUser, app: str) -> dict[str, Any]:
    return next(r for r in ok(user.client.get(f"/apps/{app}/releases")) if r["current"])


def create(user: ApiUser, app: str, plan: str = "memory", **body: Any) -> dict[str, Any]:
    found: dict[str, Any] = ok(
        user.client.post(f"/apps/{app}/addons", json={"plan": plan, **body}), 201
    )
    return found


def test_services_and_plans_include_the_built_in_ones_and_a_plugin_s(owner: ApiUser) -> None:
    services = {s["name"]: s for s in ok(owner.client.get("/addon-services"))}
    assert {"postgres", "redis", "mysql", "memory"} <= set(services)
    assert services["postgres"]["human_name"] == "PostgreSQL"
    assert ok(owner.client.get("/addon-services/mem"))["name"] == "memory"
    plans = ok(owner.client.get("/addon-services/memory/plans"))
    assert [p["name"] for p in plans] == ["memory:small", "memory:large"]
    assert [p["default"] for p in plans] == [True, False]
    assert plans[0]["addon_service"]["name"] == "memory"
    assert ok(owner.client.get("/addon-services/memory/plans/large"))["name"] == "memory:large"
    pg = [p["name"] for p in ok(owner.client.get("/addon-services/postgres/plans"))]
    assert "postgres:standard" in pg
    error(owner.client.get("/addon-services/nosuch/plans"), 404, "not_found", "nosuch")


def test_creating_attaches_and_releases(owner: ApiUser, memory: Memory) -> None:
    before = current(owner, "blog")["version"]
    addon = create(owner, "blog", "memory:large", config={"version": "2", "fast": True})
    assert set(addon) == ADDON_FIELDS
    assert addon["state"] == "provisioned"
    assert addon["provision_message"] is None
    assert addon["plan"]["name"] == "memory:large"
    assert addon["addon_service"]["name"] == "memory"
    assert addon["app"]["name"] == "blog"
    assert addon["name"].startswith("memory-")
    assert addon["config_vars"] == ["MEMORY_URL", "MEMORY_TOKEN"]
    made = memory.made[addon["id"]]
    assert made["options"] == {"version": "2", "fast": "true"}
    assert config(owner, "blog") == {
        "MEMORY_URL": f"memory://{addon['id']}",
        "MEMORY_TOKEN": made["token"],
    }
    release = current(owner, "blog")
    assert release["version"] == before + 1
    assert release["description"] == f"Attach MEMORY ({addon['name']})"
    assert release["user"]["email"] == "owner@example.com"

    # Found by name, id, or the attachment's name on the app.
    assert ok(owner.client.get(f"/addons/{addon['name']}"))["id"] == addon["id"]
    assert ok(owner.client.get(f"/addons/{addon['id']}"))["name"] == addon["name"]
    assert ok(owner.client.get("/apps/blog/addons/MEMORY"))["id"] == addon["id"]
    assert [a["name"] for a in ok(owner.client.get("/apps/blog/addons"))] == [addon["name"]]
    assert [a["name"] for a in ok(owner.client.get("/addons"))] == [addon["name"]]
    (attachment,) = ok(owner.client.get("/apps/blog/addon-attachments"))
    assert attachment["name"] == "MEMORY"
    assert attachment["addon"]["name"] == addon["name"]
    assert attachment["app"]["name"] == "blog"
    assert ok(owner.client.get(f"/addons/{addon['name']}/info")) == {"Entries": "0"}

    # The Heroku CLI sends the plan as an object.
    heroku = ok(owner.client.post("/apps/blog/addons", json={"plan": {"name": "mem:small"}}), 201)
    assert heroku["plan"]["name"] == "memory:small"
    ok(owner.client.delete(f"/addons/{heroku['name']}"))

    # A second one gets a name of its own, and a name given is kept.
    second = create(owner, "blog", attachment={"name": "CACHE"}, name="my-cache")
    assert second["name"] == "my-cache"
    assert second["config_vars"] == ["CACHE_URL", "CACHE_TOKEN"]
    third = create(owner, "blog")
    (name,) = [
        a["name"]
        for a in ok(owner.client.get("/apps/blog/addon-attachments"))
        if a["name"] not in ("MEMORY", "CACHE")
    ]
    assert name.startswith("MEMORY_")
    assert f"{name}_URL" in config(owner, "blog")
    assert third["config_vars"] == [f"{name}_URL", f"{name}_TOKEN"]


def test_bad_input_is_refused_and_changes_nothing(owner: ApiUser, memory: Memory) -> None:
    create(owner, "blog", attachment={"name": "DATABASE"})
    before = (config(owner, "blog"), current(owner, "blog")["version"])
    post = owner.client.post
    error(post("/apps/blog/addons", json={"plan": "nosuch"}), 404, "not_found", "nosuch")
    error(
        post("/apps/blog/addons", json={"plan": "memory:huge"}),
        422,
        "invalid_params",
        "small, large",
    )
    for bad in ("database", "1DB", "DB-URL", "A" * 60, ""):
        error(
            post("/apps/blog/addons", json={"plan": "memory", "attachment": {"name": bad}}),
            422,
            "invalid_params",
            "uppercase",
        )
    error(
        post("/apps/blog/addons", json={"plan": "memory", "attachment": {"name": "DATABASE"}}),
        422,
        "invalid_params",
        "DATABASE is already attached",
    )
    ok(owner.client.patch("/apps/blog/config-vars", json={"OWN_URL": "x"}))
    before = (config(owner, "blog"), current(owner, "blog")["version"])
    error(
        post("/apps/blog/addons", json={"plan": "memory", "attachment": {"name": "OWN"}}),
        422,
        "invalid_params",
        "OWN_URL is already set",
    )
    error(
        post("/apps/blog/addons", json={"plan": "memory", "name": "Bad_Name"}),
        422,
        "invalid_params",
    )
    error(post("/apps/blog/addons", json={"plan": "memory", "extra": 1}), 422, "invalid_params")
    error(post("/apps/nosuch/addons", json={"plan": "memory"}), 404, "not_found")
    assert (config(owner, "blog"), current(owner, "blog")["version"]) == before
    assert len(memory.made) == 1
    assert len(ok(owner.client.get("/apps/blog/addons"))) == 1


def test_a_failed_provisioning_shows_failed_keeps_config_and_a_retry_works(
    owner: ApiUser, memory: Memory
) -> None:
    before = (config(owner, "blog"), current(owner, "blog")["version"])
    memory.down = True
    error(
        owner.client.post("/apps/blog/addons", json={"plan": "memory", "name": "my-store"}),
        503,
        "addon_failed",
        "unreachable",
    )
    (failed,) = ok(owner.client.get("/apps/blog/addons"))
    assert failed["name"] == "my-store"
    assert failed["state"] == "failed"
    assert "unreachable" in failed["provision_message"]
    assert failed["config_vars"] == []
    assert ok(owner.client.get("/addons/my-store/info"))["Status"] == "Failed"
    assert (config(owner, "blog"), current(owner, "blog")["version"]) == before
    assert memory.made == {}

    memory.down = False
    retried = create(owner, "blog", name="my-store")
    assert retried["id"] == failed["id"]
    assert retried["state"] == "provisioned"
    assert retried["provision_message"] is None
    assert "MEMORY_URL" in config(owner, "blog")


def test_attach_detach_and_destroy_across_apps(
    addons_api: Api, owner: ApiUser, memory: Memory
) -> None:
    ok(owner.client.post("/apps", json={"name": "worker"}), 201)
    addon = create(owner, "blog")
    attached = ok(
        owner.client.post(
            "/addon-attachments", json={"addon": addon["name"], "app": "worker", "name": "SHARED"}
        ),
        201,
    )
    assert attached["name"] == "SHARED"
    assert attached["app"]["name"] == "worker"
    assert config(owner, "worker")["SHARED_URL"] == config(owner, "blog")["MEMORY_URL"]
    assert current(owner, "worker")["description"] == f"Attach SHARED ({addon['name']})"
    assert [a["name"] for a in ok(owner.client.get("/apps/worker/addons"))] == [addon["name"]]
    names = sorted(
        a["app"]["name"] for a in ok(owner.client.get(f"/addons/{addon['id']}/addon-attachments"))
    )
    assert names == ["blog", "worker"]

    # Someone without access to the add-on's apps can neither see it nor attach it.
    stranger = addons_api.user("stranger@example.com")
    ok(stranger.client.post("/apps", json={"name": "theirs"}), 201)
    error(stranger.client.get(f"/addons/{addon['name']}"), 404, "not_found")
    error(
        stranger.client.post("/addon-attachments", json={"addon": addon["name"], "app": "theirs"}),
        404,
        "not_found",
    )
    error(
        owner.client.post("/addon-attachments", json={"addon": addon["name"], "app": "theirs"}),
        404,
        "not_found",
    )

    # Destroying it while worker uses it is refused, saying where.
    message = error(owner.client.delete(f"/apps/blog/addons/{addon['name']}"), 409, "conflict")
    assert "worker (as SHARED)" in message
    assert addon["id"] in memory.made

    # Detached from worker (by attachment name), it goes; then destroying works.
    ok(owner.client.delete("/apps/worker/addon-attachments/SHARED"))
    assert "SHARED_URL" not in config(owner, "worker")
    assert current(owner, "worker")["description"] == f"Detach SHARED ({addon['name']})"
    gone = ok(owner.client.delete(f"/apps/blog/addons/{addon['name']}"))
    assert gone["state"] == "deprovisioned"
    assert memory.made == {}
    assert config(owner, "blog") == {}
    assert current(owner, "blog")["description"] == f"Detach MEMORY ({addon['name']})"
    error(owner.client.get(f"/addons/{addon['name']}"), 404, "not_found")


def test_detaching_by_attachment_id(owner: ApiUser) -> None:
    create(owner, "blog")
    (attachment,) = ok(owner.client.get("/apps/blog/addon-attachments"))
    assert ok(owner.client.get(f"/addon-attachments/{attachment['id']}"))["name"] == "MEMORY"
    ok(owner.client.delete(f"/addon-attachments/{attachment['id']}"))
    assert config(owner, "blog") == {}
    assert ok(owner.client.get("/apps/blog/addon-attachments")) == []
    # The add-on is still the app's, unattached, and can be attached again.
    (addon,) = ok(owner.client.get("/apps/blog/addons"))
    ok(owner.client.post("/addon-attachments", json={"addon": addon["name"], "app": "blog"}), 201)
    assert "MEMORY_URL" in config(owner, "blog")


def test_rotating_releases_new_credentials_to_every_attached_app(
    owner: ApiUser, memory: Memory
) -> None:
    ok(owner.client.post("/apps", json={"name": "worker"}), 201)
    addon = create(owner, "blog")
    ok(owner.client.post("/addon-attachments", json={"addon": addon["name"], "app": "worker"}), 201)
    old = config(owner, "blog")["MEMORY_TOKEN"]
    ok(owner.client.post(f"/addons/{addon['name']}/actions/rotate-credentials"))
    new = config(owner, "blog")["MEMORY_TOKEN"]
    assert new != old
    assert new == memory.made[addon["id"]]["token"]
    assert config(owner, "worker")["MEMORY_TOKEN"] == new
    assert current(owner, "blog")["description"] == "Update MEMORY by memory"
    assert current(owner, "worker")["description"] == "Update MEMORY by memory"
    # Once the apps restarted (here no dynos run), the old credentials are revoked.
    assert memory.revoked == [old]
    assert memory.made[addon["id"]]["retired"] == []


def test_a_rotation_whose_revoking_fails_says_so_and_a_second_one_revokes_both(
    owner: ApiUser, memory: Memory
) -> None:
    addon = create(owner, "blog")
    first = config(owner, "blog")["MEMORY_TOKEN"]
    memory.down = True
    reply = owner.client.post(f"/addons/{addon['name']}/actions/rotate-credentials")
    message = error(reply, 503, "addon_failed")
    assert "has new credentials and its apps use them, but revoking the old ones failed" in (
        message
    )
    second = config(owner, "blog")["MEMORY_TOKEN"]
    assert second != first
    memory.down = False
    ok(owner.client.post(f"/addons/{addon['name']}/actions/rotate-credentials"))
    assert memory.revoked == [first, second]


def test_changing_plan_keeps_credentials_and_refuses_a_plan_too_small(
    owner: ApiUser, memory: Memory
) -> None:
    addon = create(owner, "blog")
    before = config(owner, "blog")
    releases = ok(owner.client.get("/apps/blog/releases"))
    changed = ok(owner.client.patch(f"/apps/blog/addons/{addon['name']}", json={"plan": "large"}))
    assert changed["plan"]["name"] == "memory:large"
    assert memory.made[addon["id"]]["plan"] == "large"
    assert config(owner, "blog") == before
    assert ok(owner.client.get("/apps/blog/releases")) == releases
    # Heroku's clients send {"plan": {"name": ...}}; SERVICE:PLAN works too.
    memory.made[addon["id"]]["used"] = 5
    reply = owner.client.patch(f"/addons/{addon['id']}", json={"plan": {"name": "memory:small"}})
    assert error(reply, 422, "invalid_params") == "too much data for the small plan"
    for plan, message in (
        ("large", "is already on the memory:large plan"),
        ("huge", "memory has no plan 'huge'"),
        ("postgres:standard", "it cannot move to a postgres plan"),
    ):
        reply = owner.client.patch(f"/apps/blog/addons/{addon['name']}", json={"plan": plan})
        assert message in error(reply, 422, "invalid_params")
    shown = ok(owner.client.get(f"/addons/{addon['name']}"))
    assert shown["plan"]["name"] == "memory:large"


def test_destroying_an_app_destroys_the_add_ons_only_it_uses(
    owner: ApiUser, memory: Memory
) -> None:
    ok(owner.client.post("/apps", json={"name": "worker"}), 201)
    alone = create(owner, "blog")
    shared = create(owner, "blog", attachment={"name": "SHARED"})
    ok(
        owner.client.post("/addon-attachments", json={"addon": shared["name"], "app": "worker"}),
        201,
    )
    theirs = create(owner, "worker", attachment={"name": "THEIRS"})
    ok(owner.client.post("/addon-attachments", json={"addon": theirs["name"], "app": "blog"}), 201)

    ok(owner.client.delete("/apps/blog"))
    assert alone["id"] not in memory.made
    error(owner.client.get(f"/addons/{alone['name']}"), 404, "not_found")
    # Still used by worker: it stays, now worker's.
    kept = ok(owner.client.get(f"/addons/{shared['name']}"))
    assert kept["app"]["name"] == "worker"
    assert shared["id"] in memory.made
    assert theirs["id"] in memory.made
    assert sorted(a["name"] for a in ok(owner.client.get("/apps/worker/addons"))) == sorted(
        [shared["name"], theirs["name"]]
    )


def test_collaborators_see_and_attach_but_only_through_their_apps(
    addons_api: Api, owner: ApiUser
) -> None:
    addon = create(owner, "blog")
    friend = addons_api.user("friend@example.com")
    ok(owner.client.post("/apps/blog/collaborators", json={"user": friend.email}), 201)
    ok(friend.client.post("/apps", json={"name": "friends"}), 201)
    assert ok(friend.client.get(f"/addons/{addon['name']}"))["name"] == addon["name"]
    ok(
        friend.client.post("/addon-attachments", json={"addon": addon["name"], "app": "friends"}),
        201,
    )
    assert "MEMORY_URL" in config(friend, "friends")


def pending_build(api: Api) -> tuple[uuid.UUID, uuid.UUID]:
    """A pending build of the blog app (what a push records first): its id and the app's."""
    with api.database.transaction() as session:
        app = session.scalar(select(App).where(App.name == "blog"))
        assert app is not None
        build = Build(app_id=app.id, user_id=app.owner_id, status="pending", stack=app.stack)
        session.add(build)
        session.flush()
        return build.id, app.id


def test_app_json_add_ons_are_provisioned_on_the_first_deploy_only(
    owner: ApiUser, memory: Memory, addons_api: Api
) -> None:
    """What a build asks for before its release (BuildService.provision_addons)."""
    manager = addons_api.app.state.addons
    assert addons_api.app.state.builds.provision_addons == manager.provision_declared
    build_id, app_id = pending_build(addons_api)
    said: list[str] = []

    async def emit(line: str) -> None:
        said.append(line)

    def provision(*declared: str) -> None:
        asyncio.run(manager.provision_declared(build_id, declared, emit))

    # Bad input fails the build, saying which add-on and why, and provisions nothing.
    for spec, message in (
        ("nosuch", "Couldn't find add-on service 'nosuch'"),
        ("memory:huge", "memory has no plan 'huge'"),
    ):
        with pytest.raises(DockyardError, match=message):
            provision("memory", spec)
    assert ok(owner.client.get("/apps/blog/addons")) == []

    # A server that is down: the build fails with the reason; the next push retries the
    # failed add-on under its name and makes only what is missing.
    memory.down = True
    with pytest.raises(AddonFailed, match=r"app.json: addons: memory: .*unreachable"):
        provision("memory", "memory:large")
    (failed,) = ok(owner.client.get("/apps/blog/addons"))
    assert failed["state"] == "failed"
    memory.down = False
    provision("memory", "memory:large")
    made = ok(owner.client.get("/apps/blog/addons"))
    assert len(made) == 2
    assert {a["state"] for a in made} == {"provisioned"}
    assert failed["name"] in {a["name"] for a in made}, "retried under its name"
    assert {a["plan"]["name"] for a in made} == {"memory:small", "memory:large"}
    assert any(line.startswith("       Created memory-") for line in said)
    assert "MEMORY_URL" in config(owner, "blog")
    provision("memory", "memory:large")  # both there: nothing more
    assert len(ok(owner.client.get("/apps/blog/addons"))) == 2

    # Once the app has a deploy (a release with a slug), app.json's add-ons are not looked at.
    with addons_api.database.transaction() as session:
        slug = Slug(
            app_id=app_id,
            blob="slugs/x.tgz",
            checksum="SHA256:x",
            size=1,
            process_types={},
            stack="heroku-24",
        )
        session.add(slug)
        session.flush()
        release = session.scalar(select(Release).where(Release.app_id == app_id).limit(1))
        assert release is not None
        release.slug_id = slug.id
    provision("memory", "memory", "memory")
    assert len(ok(owner.client.get("/apps/blog/addons"))) == 2


def test_app_json_add_ons_take_an_attachment_name_and_options(
    owner: ApiUser, memory: Memory, addons_api: Api
) -> None:
    """app.json's {"plan": ..., "as": ..., "options": ...}: attached under ``as``, options
    passed to the provider, and options a provider does not take refused, naming them."""
    manager = addons_api.app.state.addons
    build_id, _app_id = pending_build(addons_api)

    async def emit(line: str) -> None:
        pass

    def provision(*declared: str | AddonSpec) -> None:
        asyncio.run(manager.provision_declared(build_id, declared, emit))

    memory.option_names = ("version",)
    with pytest.raises(DockyardError, match=r"memory as CACHE: memory has no option 'fast'"):
        provision(AddonSpec("memory", "CACHE", {"version": "2", "fast": "true"}))
    assert ok(owner.client.get("/apps/blog/addons")) == []
    # The same for addons:create; built-in providers take no options.
    made_by = owner.client.post
    body = {"plan": "memory", "config": {"fast": True}}
    error(made_by("/apps/blog/addons", json=body), 422, "invalid_params", "has no option 'fast'")
    error(
        made_by("/apps/blog/addons", json={"plan": "postgres", "config": {"version": "16"}}),
        422,
        "invalid_params",
        "postgres has no option 'version'; it takes none",
    )
    assert ok(owner.client.get("/apps/blog/addons")) == []

    provision(AddonSpec("memory", "CACHE", {"version": "2"}), "memory:large")
    made = {a["plan"]["name"]: a for a in ok(owner.client.get("/apps/blog/addons"))}
    assert set(made) == {"memory:small", "memory:large"}
    assert memory.made[made["memory:small"]["id"]]["options"] == {"version": "2"}
    assert memory.made[made["memory:large"]["id"]]["options"] == {}
    attachments = ok(owner.client.get("/apps/blog/addon-attachments"))
    assert sorted(a["name"] for a in attachments) == ["CACHE", "MEMORY"]
    assert {"CACHE_URL", "CACHE_TOKEN", "MEMORY_URL", "MEMORY_TOKEN"} == set(config(owner, "blog"))
    # Pushed again (the first deploy failed later): CACHE is there, nothing is made twice.
    provision(AddonSpec("memory", "CACHE", {"version": "2"}), "memory:large")
    assert len(ok(owner.client.get("/apps/blog/addons"))) == 2
