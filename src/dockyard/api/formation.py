"""``/apps/{app}/formation``: the quantity and size of each process type (Heroku's formation).

A quantity is a whole number, or a string: ``"2"``, or ``"+1"``/``"-1"`` to change it by that
much, as the Heroku CLI sends ``ps:scale web+1``. Owners and collaborators may scale.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr
from sqlalchemy.orm import Session

from dockyard import apps, formation
from dockyard.api import shapes
from dockyard.api.context import Authenticated, Caller
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.events import Events
from dockyard.logs import announce
from dockyard.store import App, Formation, User

router = APIRouter()

_QUANTITY = "Dynos to run: 2, or a string: '2', '+1' or '-1' (a change)"
_SIZE = f"Dyno size, one of {formation.size_names()} (any case)"


class FormationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quantity: StrictInt | StrictStr | None = Field(default=None, description=_QUANTITY)
    size: StrictStr | None = Field(default=None, description=_SIZE)


class BatchItem(FormationUpdate):
    type: StrictStr = Field(description="Process type, such as web or worker")


class BatchUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    updates: list[BatchItem] = Field(description="Changes to apply, all of them or none")


def _limits(caller: Caller) -> dict[str, int]:
    settings = caller.settings
    return {
        "limit": settings.max_quantity,
        "capacity_mb": formation.node_memory_mb(settings.node_memory_mb),
    }


def _scaled(session: Session, app: App, user: User) -> tuple[str, str, str, str]:
    """What the app's logs say of a scale: ``Scaled to web@2:Standard-1X worker@1:…``."""
    rows = formation.listing(session, app)
    message = announce.scaled((r.type, r.quantity, formation.size_of(r).label) for r in rows)
    return str(app.id), app.name, message, user.email


def _announce(caller: Caller, app_id: str, app_name: str, message: str, email: str) -> None:
    # After the commit: the logs never tell of a scale that did not happen.
    events: Events = caller.request.app.state.events
    announce.api(events, app_id, app_name, message, by=email)


def shape(app: App, row: Formation) -> Json:
    size = formation.size_of(row)
    return {
        "id": str(row.id),
        "app": shapes.app_ref(app),
        "type": row.type,
        "command": row.command,
        "quantity": row.quantity,
        "size": size.label,
        "dyno_size": {"id": str(size.id), "name": size.label},
        **shapes.times(row),
    }


@router.get("/apps/{app}/formation", summary="An app's process types: quantity and size of each")
def list_formation(
    caller: Authenticated, app: str, request: Request, response: Response
) -> list[Json]:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        page = paginate(
            request,
            response,
            formation.listing(session, found),
            {"type": lambda f: f.type, "id": lambda f: f.id},
        )
        return [shape(found, row) for row in page]


@router.patch("/apps/{app}/formation", summary="Scale or resize several process types at once")
def batch_update(caller: Authenticated, app: str, body: BatchUpdate) -> list[Json]:
    updates = [formation.Update(u.type, u.quantity, u.size) for u in body.updates]
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        changed = formation.scale(session, found, updates, **_limits(caller))
        shown = [shape(found, row) for row in changed]
        scaled = _scaled(session, found, user)
    _announce(caller, *scaled)
    return shown


@router.get("/apps/{app}/formation/{type}", summary="One process type, by name or id")
def get_formation(caller: Authenticated, app: str, type: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return shape(found, formation.get(session, found, type))


@router.patch("/apps/{app}/formation/{type}", summary="Scale or resize one process type")
def update(
    caller: Authenticated,
    app: str,
    type: str,
    body: FormationUpdate,
) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        change = formation.Update(formation.type_of(session, found, type), body.quantity, body.size)
        [changed] = formation.scale(session, found, [change], **_limits(caller))
        shown = shape(found, changed)
        scaled = _scaled(session, found, user)
    _announce(caller, *scaled)
    return shown
