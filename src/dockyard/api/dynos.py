"""``/apps/{app}/dynos``: the dynos that run an app's formation, and restarting them.

Shapes follow Heroku's dyno resource; ``port`` (the web dyno's ``$PORT`` on its node) and
``retry_in`` (seconds until a crashed dyno restarts) are Dockyard's own fields. A restart
(``DELETE``) or a stop stops the dynos now; the reconciler then starts fresh ones, since the
formation still asks for them.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from sqlalchemy import select

from dockyard import apps, formation
from dockyard.api.context import Authenticated
from dockyard.api.shapes import Json, app_ref
from dockyard.errors import DockyardError, NotFound
from dockyard.reconciler import DynoState, Reconciler
from dockyard.store import Release

router = APIRouter()
_DYNO_IDS = uuid.UUID("5c7f1f8e-2b1d-4c33-9a39-0dd1a6a3c1a1")


class DynosUnavailable(DockyardError):
    status = 503
    id = "unavailable"


def _reconciler(request: Request) -> Reconciler | None:
    found: Reconciler | None = getattr(request.app.state, "reconciler", None)
    return found


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def dyno_id(runtime_id: str) -> str:
    """A stable UUID for the runtime's dyno id, as Heroku's clients expect UUIDs."""
    return str(uuid.uuid5(_DYNO_IDS, runtime_id))


def shape(app: Json, state: DynoState, releases: dict[int, str]) -> Json:
    dyno = state.dyno
    size = formation.SIZES.get(dyno.size) or formation.SIZES[formation.DEFAULT_SIZE]
    return {
        "id": dyno_id(dyno.id),
        "name": dyno.name,
        "type": dyno.process_type,
        "command": dyno.command,
        "size": size.label,
        "state": state.state,
        "exit_status": state.status,
        "release": {"id": releases.get(dyno.release_version), "version": dyno.release_version},
        "app": app,
        "attach_url": None,
        "created_at": _stamp(dyno.started_at),
        "updated_at": _stamp(state.since),
        "port": dyno.port,
        "retry_in": state.retry_in,
    }


def _lookup(caller: Authenticated, app: str) -> tuple[uuid.UUID, Json, dict[int, str]]:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        rows = session.execute(
            select(Release.version, Release.id).where(Release.app_id == found.id)
        ).all()
        return found.id, app_ref(found), {version: str(rid) for version, rid in rows}


async def _listing(caller: Authenticated, request: Request, app: str) -> list[Json]:
    app_id, ref, releases = await asyncio.to_thread(_lookup, caller, app)
    reconciler = _reconciler(request)
    if reconciler is None:
        return []
    return [shape(ref, state, releases) for state in await reconciler.dynos(app_id)]


def _find(listed: list[Json], app: str, name: str) -> Json:
    for dyno in listed:
        if name in (dyno["name"], dyno["id"]):
            return dyno
    names = ", ".join(d["name"] for d in listed) or "none run now"
    raise NotFound(f"Couldn't find dyno {name!r} of {app}; its dynos: {names}")


def _running(request: Request) -> Reconciler:
    reconciler = _reconciler(request)
    if reconciler is None:
        raise DynosUnavailable("this server does not run dynos (its runtime did not start)")
    return reconciler


@router.get("/apps/{app}/dynos", summary="An app's dynos and their state")
async def list_dynos(caller: Authenticated, request: Request, app: str) -> list[Json]:
    return await _listing(caller, request, app)


@router.get("/apps/{app}/dynos/{dyno}", summary="One dyno, by name (web.1) or id")
async def get_dyno(caller: Authenticated, request: Request, app: str, dyno: str) -> Json:
    return _find(await _listing(caller, request, app), app, dyno)


@router.delete("/apps/{app}/dynos", status_code=202, summary="Restart all of an app's dynos")
async def restart_all(caller: Authenticated, request: Request, app: str) -> Json:
    app_id, _ref, _releases = await asyncio.to_thread(_lookup, caller, app)
    _running(request).restart_soon(app_id)
    return {}


@router.delete(
    "/apps/{app}/dynos/{dyno}",
    status_code=202,
    summary="Restart one dyno (web.1), or every dyno of a process type (web)",
)
async def restart(caller: Authenticated, request: Request, app: str, dyno: str) -> Json:
    listed = await _listing(caller, request, app)
    if not any(dyno in (d["name"], d["type"], d["id"]) for d in listed):
        _find(listed, app, dyno)
    found = next((d for d in listed if d["id"] == dyno), None)
    app_id = uuid.UUID(listed[0]["app"]["id"])
    _running(request).restart_soon(app_id, found["name"] if found else dyno)
    return {}


@router.post(
    "/apps/{app}/dynos/{dyno}/actions/stop",
    status_code=202,
    summary="Stop a dyno; the formation starts a new one in its place",
)
async def stop(caller: Authenticated, request: Request, app: str, dyno: str) -> Json:
    listed = await _listing(caller, request, app)
    found = _find(listed, app, dyno)
    _running(request).restart_soon(uuid.UUID(found["app"]["id"]), found["name"])
    return {}
