"""``/apps/{app}/dynos``: an app's dynos, one-off dynos (``dockyard run``), and restarts.

Shapes follow Heroku's dyno resource; ``port`` (the web dyno's ``$PORT`` on its node) and
``retry_in`` (seconds until a crashed dyno restarts) are Dockyard's own fields. A restart
(``DELETE``) or a stop stops the dynos now; the reconciler then starts fresh ones, since the
formation still asks for them. ``POST`` runs a one-off dyno (``run.N``) of the current
release, never restarted.

An attached one-off dyno's ``attach_url`` is a WebSocket (``ws://`` or ``wss://``) that
works once, for a few minutes, with the caller's ``Authorization`` header. Each binary
message is a channel byte and its payload: 0 stdin, 4 resize ``{"rows", "cols"}`` and 5 end
of stdin from the client; 1 stdout and 2 stderr from the dyno, then 3 ``{"status": N}`` when
it exited. Closing the WebSocket stops the dyno.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr
from sqlalchemy import select

from dockyard import accounts, apps, formation
from dockyard.api.context import Authenticated, Caller, token_from
from dockyard.api.shapes import Json, app_ref
from dockyard.errors import (
    Conflict,
    DockyardError,
    Forbidden,
    InvalidParams,
    NotFound,
    Unauthorized,
)
from dockyard.reconciler import DynoState, Reconciler, read_desired
from dockyard.runtime import Attachment, Dyno, DynoError, DynoNotFound
from dockyard.signing import Signer
from dockyard.store import Database, Release, Slug

router = APIRouter()
_DYNO_IDS = uuid.UUID("5c7f1f8e-2b1d-4c33-9a39-0dd1a6a3c1a1")
ATTACH_TTL = 300  # seconds an attach URL works
MAX_TIME_TO_LIVE = 24 * 3600
# The attach WebSocket's channels (the first byte of each message).
STDIN, STDOUT, STDERR, EXIT, RESIZE, EOF = range(6)
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_expiring: set[asyncio.Task[None]] = set()  # one-off dynos that have a time to live


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
        "reason": state.reason,
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
    summary="Stop a dyno (web.1) or a process type's dynos (web); the formation starts new ones",
)
async def stop(caller: Authenticated, request: Request, app: str, dyno: str) -> Json:
    return await restart(caller, request, app, dyno)


# -- one-off dynos ------------------------------------------------------------------------


class DynoCreate(BaseModel):
    """Heroku's dyno create body."""

    model_config = ConfigDict(extra="forbid")
    command: StrictStr = Field(
        description="Command to run under bash; a process type's name (worker) runs its command"
    )
    attach: StrictBool | None = Field(
        default=None,
        description="Attached: input and output through attach_url (`dockyard run`); else "
        "output to the log (`dockyard run:detached`)",
    )
    size: StrictStr | None = Field(
        default=None, description=f"Dyno size, one of {formation.size_names()}"
    )
    env: dict[str, StrictStr | StrictInt | StrictFloat] | None = Field(
        default=None, description="Variables added to the release's config vars for this dyno"
    )
    type: StrictStr | None = Field(default=None, description="Dyno type: run (the only one)")
    time_to_live: StrictInt | None = Field(
        default=None,
        description=f"Seconds after which the dyno is stopped, up to {MAX_TIME_TO_LIVE}",
    )
    force_no_tty: StrictBool | None = Field(
        default=None, description="An attached dyno gets pipes, not a terminal"
    )


def expand(command: str, process_types: Mapping[str, str]) -> str:
    """``worker --once`` as the Procfile's worker command followed by ``--once``."""
    first, *rest = command.strip().split(maxsplit=1)
    found = process_types.get(first)
    return command if found is None else " ".join([found, *rest])


def _env(given: Mapping[str, object] | None) -> dict[str, str]:
    env = {name: str(value) for name, value in (given or {}).items()}
    wrong = [name for name in env if not _ENV_NAME.match(name)]
    if wrong:
        raise InvalidParams(
            f"env: {', '.join(map(repr, wrong))} cannot be variable names; use letters, "
            "digits and _, not starting with a digit"
        )
    return env


def _process_types(caller: Caller, app: str) -> tuple[uuid.UUID, Json, dict[int, str], Json]:
    """The app's id, reference, release ids by version, and its current slug's process types."""
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        rows = session.execute(
            select(Release.version, Release.id).where(Release.app_id == found.id)
        ).all()
        types = session.scalar(
            select(Slug.process_types)
            .join(Release, Release.slug_id == Slug.id)
            .where(Release.app_id == found.id, Release.current.is_(True))
        )
        releases = {version: str(rid) for version, rid in rows}
        return found.id, app_ref(found), releases, dict(types or {})


def _signer(request: Request | WebSocket) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def attach_url(request: Request, app: str, dyno: Dyno) -> str:
    """The WebSocket URL to attach to ``dyno`` once, for :data:`ATTACH_TTL` seconds."""
    token = _signer(request).sign("attach", dyno.id, ttl=ATTACH_TTL)
    scheme, _, host = str(request.base_url).rstrip("/").partition("://")
    websocket = "wss" if scheme == "https" else "ws"
    return f"{websocket}://{host}/apps/{app}/dynos/{dyno.name}/attach?token={token}"


async def _expire(reconciler: Reconciler, app_id: uuid.UUID, dyno: Dyno, seconds: int) -> None:
    await asyncio.sleep(seconds)
    if any(d.id == dyno.id for d in await reconciler.runtime.list()):
        await reconciler.restart(app_id, dyno.name)


@router.post(
    "/apps/{app}/dynos",
    status_code=201,
    summary="Run a one-off dyno (run.N) of the current release, attached or with output to the log",
)
async def create(caller: Authenticated, request: Request, app: str, body: DynoCreate) -> Json:
    reconciler = _running(request)
    if not body.command.strip():
        raise InvalidParams("command: give the command to run, like `bash` or `rake db:migrate`")
    if body.type not in (None, "run"):
        raise InvalidParams(f"type: one-off dynos are of type run, not {body.type!r}")
    if body.time_to_live is not None and not 0 < body.time_to_live <= MAX_TIME_TO_LIVE:
        raise InvalidParams(f"time_to_live: give seconds from 1 to {MAX_TIME_TO_LIVE}")
    size = formation.find_size(body.size).name if body.size else formation.DEFAULT_SIZE
    env = _env(body.env)
    app_id, ref, releases, types = await asyncio.to_thread(_process_types, caller, app)
    desired = (await asyncio.to_thread(read_desired, caller.database)).get(app_id)
    if desired is None:
        raise InvalidParams(
            f"{ref['name']} has no release to run yet: deploy code first (`git push dockyard main`)"
        )
    attach = bool(body.attach)
    dyno = await reconciler.one_off(
        desired,
        "run",
        expand(body.command, types),
        env=env,
        size=size,
        attach=attach,
        tty=attach and not body.force_no_tty,
    )
    if body.time_to_live is not None:
        task = asyncio.create_task(_expire(reconciler, app_id, dyno, body.time_to_live))
        _expiring.add(task)
        task.add_done_callback(_expiring.discard)
    reply = shape(ref, DynoState("up", dyno.started_at, dyno), releases)
    if attach:
        reply["attach_url"] = attach_url(request, ref["name"], dyno)
    return reply


# -- attaching ------------------------------------------------------------------------------


def _websocket_app(database: Database, authorization: str, app: str) -> uuid.UUID:
    token = token_from(authorization)
    if token is None:
        raise Unauthorized("send 'Authorization: Bearer <API token>' to attach to a dyno")
    with database.transaction() as session:
        user = accounts.authenticate(session, token)
        return apps.find(session, user, app).id


async def _attachment(websocket: WebSocket, app: str, name: str, token: str) -> Attachment:
    reconciler: Reconciler | None = getattr(websocket.app.state, "reconciler", None)
    if reconciler is None:
        raise DynosUnavailable("this server does not run dynos (its runtime did not start)")
    authorization = websocket.headers.get("authorization", "")
    database: Database = websocket.app.state.database
    app_id = await asyncio.to_thread(_websocket_app, database, authorization, app)
    named = [s.dyno for s in await reconciler.dynos(app_id) if s.dyno.name == name]
    if not named:
        raise NotFound(f"no dyno {name} of {app} runs now")
    signer = _signer(websocket)
    dyno = next((d for d in named if signer.verify("attach", d.id, token)), None)
    if dyno is None:
        raise Forbidden(f"this URL does not attach to {name} (any more); run the command again")
    try:
        return await reconciler.runtime.attach(dyno.id)
    except DynoNotFound as exc:
        raise NotFound(f"dyno {name} of {app} has ended") from exc
    except DynoError as exc:
        raise Conflict(exc.message) from exc


@router.websocket("/apps/{app}/dynos/{dyno}/attach")
async def attach(websocket: WebSocket, app: str, dyno: str, token: str = "") -> None:
    """A one-off dyno's input and output (its ``attach_url``)."""
    try:
        attachment = await _attachment(websocket, app, dyno, token)
    except DockyardError as exc:
        await websocket.send_denial_response(JSONResponse(exc.to_json(), status_code=exc.status))
        return
    try:
        await websocket.accept()
        await _bridge(websocket, attachment)
    finally:
        await attachment.close()  # when the client went first, this stops the dyno


async def _bridge(websocket: WebSocket, attachment: Attachment) -> None:
    """Carry the client's input to the dyno and its output back, until either side ends."""

    async def to_client() -> None:
        while (got := await attachment.read()) is not None:
            channel = STDOUT if got.stream == "stdout" else STDERR
            await websocket.send_bytes(bytes([channel]) + got.data)
        await websocket.send_bytes(
            bytes([EXIT]) + json.dumps({"status": attachment.status}).encode()
        )
        await websocket.close()

    async def from_client() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            data: bytes = message.get("bytes") or b""
            if data[:1] == bytes([STDIN]):
                await attachment.write(data[1:])
            elif data[:1] == bytes([RESIZE]):
                size = _size(data[1:])
                if size is not None:
                    await attachment.resize(*size)
            elif data[:1] == bytes([EOF]):
                await attachment.close_input()

    tasks = [asyncio.create_task(to_client()), asyncio.create_task(from_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            # The client going away mid-send ends the output side with an error: expected.
            with contextlib.suppress(
                asyncio.CancelledError, WebSocketDisconnect, RuntimeError, OSError
            ):
                await task


def _size(payload: bytes) -> tuple[int, int] | None:
    try:
        value: Any = json.loads(payload)
        return int(value["rows"]), int(value["cols"])
    except (ValueError, TypeError, KeyError):
        return None
