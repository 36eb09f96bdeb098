"""``/apps/{app}/log-sessions``: short-lived URLs that stream an app's logs (logplex_url).

``POST /apps/{app}/log-sessions {lines, tail, dyno, source, since}`` answers
``{id, logplex_url, created_at, updated_at}``. The URL (``/streams/logs/{app id}?…``)
carries its own credential: the session's filters and an expiry, signed with the server's
secret (:mod:`dockyard.signing`). It must be opened within :data:`SESSION_TTL` seconds; a
stream once open lasts as long as the client reads it. An expired URL, or one altered (say,
to read another app), is answered ``403``.

``GET`` on it streams the last ``lines`` lines (100 by default, up to what the history keeps)
and, with ``tail``, each new line as it comes:

- as ``text/plain``, one rendered line each (curl);
- as ``text/event-stream`` when the client asks for it (the Heroku CLI, ``dockyard logs``):
  each event holds lines (``data:``) and the number of the last line of the stream read so
  far (``id:``); an event with an ``id:`` only says where the reader is, ``: keep-alive``
  comments come while nothing happens. A client that reconnects with ``Last-Event-ID``
  (as EventSource does), or opens a new session with ``since``, gets every line after that
  number, and none twice.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from dockyard import apps
from dockyard.api.context import Authenticated
from dockyard.api.shapes import Json
from dockyard.errors import Forbidden, InvalidParams
from dockyard.logs.hub import LogHub, Subscription
from dockyard.logs.lines import Filter, Line
from dockyard.signing import Signer

router = APIRouter()
log = logging.getLogger("dockyard.api")

SESSION_TTL = 300  # seconds to open a log session's URL
DEFAULT_LINES = 100
KEEPALIVE = 15.0  # seconds between keep-alive comments on a quiet event stream
_PURPOSE = "log-session"


class LogSessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    lines: StrictInt | None = Field(
        default=None,
        ge=0,
        description="How many of the last lines to give (default 100; more are read from the "
        "history, up to what it keeps)",
    )
    tail: StrictBool = Field(default=False, description="Keep streaming new lines as they come")
    dyno: StrictStr | None = Field(
        default=None,
        max_length=100,
        description="Only lines of this dyno or process (web.1, router) or process type (web)",
    )
    source: StrictStr | None = Field(
        default=None, description="Only lines of this source: app, or dockyard (or heroku)"
    )
    since: StrictInt | None = Field(
        default=None,
        ge=0,
        description="Instead of the last lines, every line numbered after this one (an id of "
        "the event stream): how a reader resumes without gaps or repeats",
    )


def _hub(request: Request) -> LogHub:
    hub: LogHub = request.app.state.logs
    return hub


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def _signed(app_id: str, params: dict[str, str]) -> str:
    keys = ("session", "lines", "tail", "dyno", "source", "since")
    return "|".join([app_id, *(params.get(key, "") for key in keys)])


@router.post(
    "/apps/{app}/log-sessions",
    status_code=201,
    summary="A log session: a short-lived URL that streams the app's logs",
)
def create_session(caller: Authenticated, app: str, body: LogSessionCreate) -> Json:
    with caller.transaction() as (session, user):
        app_id = str(apps.find(session, user, app).id)
    try:
        Filter(body.dyno, body.source)
    except ValueError as exc:
        raise InvalidParams(str(exc)) from exc
    session_id = str(uuid.uuid4())
    params = {
        "session": session_id,
        "lines": str(DEFAULT_LINES if body.lines is None else body.lines),
        "tail": "1" if body.tail else "0",
        "dyno": body.dyno or "",
        "source": body.source or "",
        "since": "" if body.since is None else str(body.since),
    }
    token = _signer(caller.request).sign(_PURPOSE, _signed(app_id, params), ttl=SESSION_TTL)
    base = caller.api_url.rstrip("/")
    created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "id": session_id,
        "logplex_url": f"{base}/streams/logs/{app_id}?{urlencode({**params, 'token': token})}",
        "created_at": created,
        "updated_at": created,
    }


def _check(request: Request, app_id: str) -> dict[str, str]:
    params = dict(request.query_params)
    token = params.pop("token", "")
    expires = token.partition(".")[0]
    if expires.isdigit() and int(expires) < time.time():
        raise Forbidden(
            "this log session URL has expired; create a new session (POST "
            "/apps/{app}/log-sessions, which `dockyard logs` and `heroku logs` do)"
        )
    if not _signer(request).verify(_PURPOSE, _signed(app_id, params), token):
        raise Forbidden(
            "this log session URL is not valid for this app (or was altered); create a new "
            "session with POST /apps/{app}/log-sessions"
        )
    return params


def _number(text: str) -> int | None:
    return int(text) if text.isdigit() else None


@router.get(
    "/streams/logs/{app_id}",
    summary="A log session's stream: text/plain, or text/event-stream (signed URL)",
)
async def stream(request: Request, app_id: str) -> StreamingResponse:
    params = _check(request, app_id)
    since = _number(request.headers.get("last-event-id", "").strip())
    if since is None:
        since = _number(params.get("since", ""))
    match = Filter(params.get("dyno") or None, params.get("source") or None)
    hub = _hub(request)
    tail = params.get("tail") == "1"

    def subscribe() -> Subscription:
        # In the response's own task, so that its end (or the client's going) closes it.
        return hub.subscribe(
            app_id,
            lines=None if since is not None else _number(params.get("lines", "")),
            since=since,
            match=None if match.everything else match,
            tail=tail,
        )

    async def plain() -> AsyncIterator[str]:
        subscription = subscribe()
        try:
            async for batch in subscription:
                yield "".join(f"{line.render()}\n" for line in batch)
        finally:
            subscription.close()

    async def event_stream() -> AsyncIterator[str]:
        subscription = subscribe()
        told = None
        try:
            while True:
                batch = await subscription.next_batch(KEEPALIVE if tail else None)
                if batch is None:
                    break
                cursor = subscription.cursor
                if batch:
                    yield _event(batch, cursor)
                elif cursor != told:
                    yield f"id: {cursor}\n\n"
                else:
                    yield ": keep-alive\n\n"
                told = cursor
            if subscription.cursor != told:
                yield f"id: {subscription.cursor}\n\n"
        finally:
            subscription.close()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    if "text/event-stream" in request.headers.get("accept", ""):
        return StreamingResponse(event_stream(), media_type="text/event-stream", headers=headers)
    return StreamingResponse(plain(), media_type="text/plain; charset=utf-8", headers=headers)


def _event(batch: list[Line], cursor: int) -> str:
    data = "".join(f"data: {line.render()}\n" for line in batch)
    return f"id: {cursor}\n{data}\n"
