"""``/apps`` and ``/apps/{app}/collaborators``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard import apps
from dockyard.api import shapes
from dockyard.api.context import Authenticated
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.errors import InvalidParams

router = APIRouter()


class AppCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, description="Random if not given")
    region: str | None = Field(default=None, description="Only 'local' exists")
    stack: str | None = Field(default=None, description=f"Only '{apps.STACK}' exists")


class AppUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    maintenance: bool | None = None
    build_stack: str | None = None
    deploy_branch: str | None = Field(
        default=None,
        description="Dockyard: the branch whose pushes deploy; empty for main (or master)",
    )
    https_only: bool | None = Field(
        default=None,
        description="Dockyard: redirect HTTP requests to HTTPS (301), except ACME challenges",
    )
    router_timeout: int | None = Field(
        default=None,
        ge=1,
        le=apps.MAX_ROUTER_TIMEOUT,
        description="Dockyard: seconds the router waits for the response to start (else H12); "
        "null for the platform's DOCKYARD_ROUTER_TIMEOUT",
    )
    router_idle_timeout: int | None = Field(
        default=None,
        ge=1,
        le=apps.MAX_ROUTER_TIMEOUT,
        description="Dockyard: seconds a WebSocket (or other upgraded connection) may stay "
        "silent; null for the platform's DOCKYARD_ROUTER_IDLE_TIMEOUT",
    )


class CollaboratorCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str = Field(description="The email of an existing user")
    silent: bool = Field(default=False, description="Accepted for Heroku compatibility")


def _check_choice(field: str, value: str | None, allowed: str) -> None:
    if value is not None and value != allowed:
        raise InvalidParams(
            f"{field} {value!r} does not exist; the only {field} here is {allowed!r}"
        )


@router.get("/apps", summary="List the apps the caller can see")
def list_apps(caller: Authenticated, request: Request, response: Response) -> list[Json]:
    with caller.transaction() as (session, user):
        found = apps.visible(session, user)
        page = paginate(request, response, found, {"name": lambda a: a.name, "id": lambda a: a.id})
        return [shapes.app(caller.settings, caller.api_url, a) for a in page]


@router.get("/users/~/apps", summary="List the apps the caller can see")
def list_user_apps(caller: Authenticated, request: Request, response: Response) -> list[Json]:
    return list_apps(caller, request, response)


@router.post("/apps", status_code=201, summary="Create an app")
def create_app(caller: Authenticated, body: AppCreate | None = None) -> Json:
    body = body or AppCreate()
    _check_choice("region", body.region, apps.REGION)
    _check_choice("stack", body.stack, apps.STACK)
    with caller.transaction() as (session, user):
        return shapes.app(caller.settings, caller.api_url, apps.create(session, user, body.name))


@router.get("/apps/{app}", summary="One app, by name or id")
def get_app(caller: Authenticated, app: str) -> Json:
    with caller.transaction() as (session, user):
        return shapes.app(caller.settings, caller.api_url, apps.find(session, user, app))


@router.patch(
    "/apps/{app}", summary="Rename an app, switch maintenance mode, or set its router timeouts"
)
def update_app(caller: Authenticated, app: str, body: AppUpdate) -> Json:
    _check_choice("build_stack", body.build_stack, apps.STACK)
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        if body.name is not None:
            apps.rename(session, user, found, body.name)
        if body.maintenance is not None:
            found.maintenance = body.maintenance
        if body.deploy_branch is not None:
            found.deploy_branch = apps.check_branch(body.deploy_branch)
        if body.https_only is not None:
            found.https_only = body.https_only
        # null sets the platform's timeout back: a field given, even as null, counts.
        if "router_timeout" in body.model_fields_set:
            found.router_timeout = body.router_timeout
        if "router_idle_timeout" in body.model_fields_set:
            found.router_idle_timeout = body.router_idle_timeout
        session.flush()
        return shapes.app(caller.settings, caller.api_url, found)


@router.delete("/apps/{app}", summary="Destroy an app and everything it holds")
def delete_app(caller: Authenticated, app: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        shown = shapes.app(caller.settings, caller.api_url, found)
        apps.require_owner(user, found, "destroy it")
        # The add-ons only this app uses go with it; those attached elsewhere stay there.
        caller.request.app.state.addons.forget_app(session, found)
        apps.destroy(session, user, found)
        return shown


@router.get("/apps/{app}/collaborators", summary="List an app's collaborators")
def list_collaborators(
    caller: Authenticated, app: str, request: Request, response: Response
) -> list[Json]:
    with caller.transaction() as (session, user):
        found = apps.collaborators(session, apps.find(session, user, app))
        page = paginate(request, response, found, {"id": lambda c: c.id})
        return [shapes.collaborator(c) for c in page]


@router.post("/apps/{app}/collaborators", status_code=201, summary="Give a user access to an app")
def add_collaborator(caller: Authenticated, app: str, body: CollaboratorCreate) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        return shapes.collaborator(apps.add_collaborator(session, user, found, body.user))


@router.get("/apps/{app}/collaborators/{collaborator}", summary="One collaborator, by id or email")
def get_collaborator(caller: Authenticated, app: str, collaborator: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return shapes.collaborator(apps.find_collaborator(session, found, collaborator))


@router.delete("/apps/{app}/collaborators/{collaborator}", summary="Take a user's access away")
def delete_collaborator(caller: Authenticated, app: str, collaborator: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        removed = apps.find_collaborator(session, found, collaborator)
        shown = shapes.collaborator(removed)
        apps.remove_collaborator(session, user, found, removed)
        return shown
