"""Log sessions (``/apps/{app}/log-sessions`` and their signed stream URLs), and the app[api]
lines that releases (config changes, rollbacks) and scaling add to an app's logs."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from api.checks import error, ok
from conftest import Api, ApiUser
from dockyard import formation
from dockyard.api import logs as log_sessions
from dockyard.events import Event
from dockyard.logs.hub import LogHub
from dockyard.logs.lines import Line
from dockyard.store import App

AT = 1_767_607_200_123_456  # 2026-01-05T10:00:00.123456+00:00


@pytest.fixture
def owner(api: Api) -> ApiUser:
    user = api.user("owner@example.com")
    ok(user.client.post("/apps", json={"name": "shop"}), 201)
    return user


def app_id(api: Api, name: str = "shop") -> str:
    with api.database.transaction() as session:
        return str(session.scalars(select(App.id).where(App.name == name)).one())


def publish(api: Api, lines: list[tuple[str, str, str]], name: str = "shop") -> None:
    hub: LogHub = api.app.state.logs
    hub.publish(app_id(api, name), [Line(AT, s, p, m) for s, p, m in lines])


def session(user: ApiUser, app: str = "shop", **body: Any) -> dict[str, Any]:
    created: dict[str, Any] = ok(user.client.post(f"/apps/{app}/log-sessions", json=body), 201)
    return created


def read(api: Api, url: str, **headers: str) -> str:
    reply = api.anonymous.get(url, headers=headers)  # the URL is its own credential
    assert reply.status_code == 200, reply.text
    return reply.text


def test_a_log_session_has_herokus_shape_and_streams_the_last_lines(
    api: Api, owner: ApiUser
) -> None:
    publish(api, [("app", "web.1", f"line {n}") for n in range(1, 151)])
    created = session(owner, lines=3)
    assert set(created) == {"id", "logplex_url", "created_at", "updated_at"}
    assert created["logplex_url"].startswith("http://testserver/streams/logs/")
    reply = api.anonymous.get(created["logplex_url"])
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    assert reply.text == "".join(
        f"2026-01-05T10:00:00.123456+00:00 app[web.1]: line {n}\n" for n in (148, 149, 150)
    )
    # 100 by default, as the Heroku CLI asks.
    assert len(read(api, session(owner)["logplex_url"]).splitlines()) == 100
    assert read(api, session(owner, lines=0)["logplex_url"]) == ""


def test_sessions_filter_by_dyno_and_source(api: Api, owner: ApiUser) -> None:
    publish(
        api,
        [
            ("app", "web.1", "from web.1"),
            ("app", "worker.1", "from worker.1"),
            ("dockyard", "web.1", "State changed from starting to up"),
            ("dockyard", "router", "at=info method=GET"),
            ("app", "api", "Set FOO config vars by owner@example.com"),
        ],
    )

    def shown(**body: Any) -> list[str]:
        text = read(api, session(owner, **body)["logplex_url"])
        return [line.split(" ", 1)[1] for line in text.splitlines()]

    assert shown(dyno="web") == [
        "app[web.1]: from web.1",
        "dockyard[web.1]: State changed from starting to up",
    ]
    assert shown(dyno="web.1", source="app") == ["app[web.1]: from web.1"]
    assert shown(source="heroku") == [
        "dockyard[web.1]: State changed from starting to up",
        "dockyard[router]: at=info method=GET",
    ]
    assert shown(dyno="router") == ["dockyard[router]: at=info method=GET"]
    assert shown(source="app", lines=2) == [
        "app[worker.1]: from worker.1",
        "app[api]: Set FOO config vars by owner@example.com",
    ]


def test_event_streams_carry_ids_to_resume_from(api: Api, owner: ApiUser) -> None:
    publish(api, [("app", "web.1", f"line {n}") for n in range(1, 6)])
    url = session(owner, lines=2)["logplex_url"]
    reply = api.anonymous.get(url, headers={"Accept": "text/event-stream"})
    assert reply.headers["content-type"].startswith("text/event-stream")
    assert reply.text == (
        "id: 5\n"
        "data: 2026-01-05T10:00:00.123456+00:00 app[web.1]: line 4\n"
        "data: 2026-01-05T10:00:00.123456+00:00 app[web.1]: line 5\n\n"
    )
    # EventSource reconnects with Last-Event-ID: everything after it, whatever `lines` says.
    again = read(api, url, **{"Accept": "text/event-stream", "Last-Event-ID": "2"})
    assert [x for x in again.splitlines() if x.startswith("data:")] == [
        f"data: 2026-01-05T10:00:00.123456+00:00 app[web.1]: line {n}" for n in (3, 4, 5)
    ]
    # A new session from a cursor gives what came after it; none filtered in: just the cursor.
    since = read(api, session(owner, since=4)["logplex_url"])
    assert since == "2026-01-05T10:00:00.123456+00:00 app[web.1]: line 5\n"
    quiet = read(api, session(owner, source="dockyard")["logplex_url"], Accept="text/event-stream")
    assert quiet == "id: 5\n\n"


def test_expired_or_altered_urls_are_refused(
    api: Api, owner: ApiUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    ok(owner.client.post("/apps", json={"name": "other"}), 201)
    url = session(owner)["logplex_url"]
    elsewhere = url.replace(app_id(api), app_id(api, "other"))
    error(api.anonymous.get(elsewhere), 403, "forbidden", "not valid for this app")
    more = url.replace("lines=100", "lines=1000")
    error(api.anonymous.get(more), 403, "forbidden", "not valid")
    monkeypatch.setattr(log_sessions, "SESSION_TTL", -1)
    expired = session(owner)["logplex_url"]
    error(api.anonymous.get(expired), 403, "forbidden", "expired", "create a new session")


def test_sessions_are_for_those_who_may_see_the_app(api: Api, owner: ApiUser) -> None:
    stranger = api.user("stranger@example.com")
    reply = stranger.client.post("/apps/shop/log-sessions", json={})
    error(reply, 404, "not_found")
    error(
        owner.client.post("/apps/shop/log-sessions", json={"source": "kernel"}),
        422,
        "invalid_params",
        "not a log source",
    )
    error(owner.client.post("/apps/shop/log-sessions", json={"lines": -1}), 422, "invalid_params")


def test_releases_and_scaling_show_in_the_apps_logs(api_on: Api) -> None:
    owner = api_on.user("owner@example.com")
    ok(owner.client.post("/apps", json={"name": "shop"}), 201)
    seen: list[Event] = []
    api_on.app.state.events.listen(seen.append)

    def said() -> list[str]:
        shown = [f"{e.tag}: {e.message}" for e in seen]
        seen.clear()
        return shown

    ok(owner.client.patch("/apps/shop/config-vars", json={"FOO": "secret-1", "BAR": "2"}))
    assert said() == [
        "app[api]: Set FOO, BAR config vars by owner@example.com",
        "app[api]: Release v2 created by owner@example.com",
    ]
    ok(owner.client.patch("/apps/shop/config-vars", json={"FOO": None}))
    assert said() == [
        "app[api]: Remove FOO config vars by owner@example.com",
        "app[api]: Release v3 created by owner@example.com",
    ]
    ok(owner.client.post("/apps/shop/releases", json={"release": "v2"}), 201)
    assert said() == [
        "app[api]: Rollback to v2 by owner@example.com",
        "app[api]: Release v4 created by owner@example.com",
    ]
    assert not any("secret-1" in event.message for event in seen)
    ok(owner.client.patch("/apps/shop/config-vars", json={"BAR": "2"}))  # no change
    assert said() == []
    error(owner.client.patch("/apps/shop/config-vars", json={"1BAD": "x"}), 422, "invalid_params")
    assert said() == []

    with api_on.database.transaction() as session:
        app = session.scalars(select(App).where(App.name == "shop")).one()
        types = {"web": "bin/web", "worker": "bin/worker"}
        formation.sync(session, app, types, None, limit=api_on.settings.max_quantity)
    ok(owner.client.patch("/apps/shop/formation/web", json={"quantity": 2}))
    assert said() == [
        "app[api]: Scaled to web@2:Standard-1X worker@0:Standard-1X by owner@example.com"
    ]
    batch = {"updates": [{"type": "worker", "quantity": 1, "size": "standard-2x"}]}
    ok(owner.client.patch("/apps/shop/formation", json=batch))
    assert said() == [
        "app[api]: Scaled to web@2:Standard-1X worker@1:Standard-2X by owner@example.com"
    ]
    error(
        owner.client.patch("/apps/shop/formation/web", json={"quantity": -5}), 422, "invalid_params"
    )
    assert said() == []
