"""``/apps/{app}/log-drains``: where an app's logs are also sent (Heroku's log-drain resource).

A drain is ``{id, url, token, addon, app, created_at, updated_at}``; ``token`` (``d.<uuid>``)
names it in what it receives. One is found by its id, token or URL (URL-encoded in the path,
as the Heroku CLI sends it). Owners and collaborators may add and remove drains; the server's
:class:`~dockyard.logs.drain_delivery.Drains` follows each change at once.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from dockyard import apps
from dockyard.api import shapes
from dockyard.api.context import Authenticated
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.logs import drains
from dockyard.store import App, LogDrain

router = APIRouter()


class DrainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: StrictStr = Field(
        description="syslog://HOST:PORT, syslog+tls://HOST:PORT or https://[USER:PASSWORD@]HOST/PATH"
    )


def shape(app: App, drain: LogDrain) -> Json:
    return {
        "id": str(drain.id),
        "url": drain.url,
        "token": drain.token,
        "addon": None,
        "app": shapes.app_ref(app),
        **shapes.times(drain),
    }


@router.get("/apps/{app}/log-drains", summary="List an app's log drains")
def list_drains(
    caller: Authenticated, app: str, request: Request, response: Response
) -> list[Json]:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        page = paginate(
            request,
            response,
            drains.listing(session, found),
            {"url": lambda d: d.url, "id": lambda d: d.id, "token": lambda d: d.token},
        )
        return [shape(found, drain) for drain in page]


@router.post("/apps/{app}/log-drains", status_code=201, summary="Add a log drain to an app")
def add_drain(caller: Authenticated, app: str, body: DrainCreate) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        private = caller.settings.drain_private_addresses
        return shape(found, drains.add(session, found, body.url, private=private))


@router.get(
    "/apps/{app}/log-drains/{drain:path}", summary="One of an app's drains, by id, token or URL"
)
def get_drain(caller: Authenticated, app: str, drain: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return shape(found, drains.find(session, found, drain))


@router.delete(
    "/apps/{app}/log-drains/{drain:path}", summary="Remove a log drain, by id, token or URL"
)
def remove_drain(caller: Authenticated, app: str, drain: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        return shape(found, drains.remove(session, found, drain))
