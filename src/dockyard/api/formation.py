"""``/apps/{app}/formation``: the quantity and size of each process type (Heroku's formation).

A quantity is a whole number, or a string: ``"2"``, or ``"+1"``/``"-1"`` to change it by that
much, as the Heroku CLI sends ``ps:scale web+1``. Owners and collaborators may scale.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

from dockyard import apps, formation
from dockyard.api import shapes
from dockyard.api.context import Authenticated
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.store import App, Formation

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
        changed = formation.scale(session, found, updates, limit=caller.settings.max_quantity)
        return [shape(found, row) for row in changed]


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
        [changed] = formation.scale(session, found, [change], limit=caller.settings.max_quantity)
        return shape(found, changed)
