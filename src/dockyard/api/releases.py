"""``/apps/{app}/config-vars`` and ``/apps/{app}/releases``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt

from dockyard import apps, releases
from dockyard.api import shapes
from dockyard.api.context import Authenticated
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.errors import InvalidParams

router = APIRouter()


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Heroku's schema takes a release's id or its version number (an integer).
    release: str | StrictInt = Field(description="Id or version of the release to roll back to")


@router.get("/apps/{app}/config-vars", summary="An app's config vars")
def get_config(caller: Authenticated, app: str) -> dict[str, str]:
    with caller.transaction() as (session, user):
        return releases.config(session, apps.find(session, user, app))


@router.patch(
    "/apps/{app}/config-vars", summary="Set config vars (a null value unsets); makes a release"
)
def update_config(
    caller: Authenticated,
    app: str,
    body: dict[str, Any] = Body(  # noqa: B008 - FastAPI's way to declare a free-form JSON body
        description="Names to values; null unsets",
        examples=[{"FOO": "bar", "OLD": None}],
    ),
) -> dict[str, str]:
    if not isinstance(body, dict):
        raise InvalidParams("the body must be a JSON object of config var names to values")
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        return releases.update_config(session, found, body, user)


@router.get("/apps/{app}/releases", summary="List an app's releases")
def list_releases(
    caller: Authenticated, app: str, request: Request, response: Response
) -> list[Json]:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        page = paginate(
            request,
            response,
            releases.history(session, found),
            {"version": lambda r: r.version, "id": lambda r: r.id},
        )
        return [shapes.release(found, r) for r in page]


@router.post(
    "/apps/{app}/releases", status_code=201, summary="Roll back: a new release from an old one"
)
def rollback(caller: Authenticated, app: str, body: Rollback) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        return shapes.release(found, releases.rollback(session, found, str(body.release), user))


@router.get("/apps/{app}/releases/{release}", summary="One release, by id or version")
def get_release(caller: Authenticated, app: str, release: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return shapes.release(found, releases.get(session, found, release))


@router.get("/apps/{app}/releases/{release}/config-vars", summary="The config vars of one release")
def release_config(caller: Authenticated, app: str, release: str) -> dict[str, str]:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return dict(releases.get(session, found, release).config)
