"""Add-ons in Heroku's shapes: ``/apps/{app}/addons``, ``/addons``, ``/addon-attachments``,
``/addon-services`` and their plans.

Creating an add-on provisions it before answering (``state: provisioned``); a provider that
fails answers 503 ``addon_failed`` and leaves the add-on listed as ``failed`` with the
reason in ``provision_message``. Attaching, detaching, rotating and destroying each make a
release of the apps concerned, which restarts them.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from dockyard import addons, apps
from dockyard.addons import Addons, Catalog, Plan, Provider
from dockyard.api import shapes
from dockyard.api.context import Authenticated
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.errors import InvalidParams, NotFound
from dockyard.store import Addon, AddonAttachment

router = APIRouter()
_NAMESPACE = uuid.UUID("5f0e8a52-1c55-4d2b-9a53-6c1d0c1f2a11")


class AttachmentName(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(default=None, description="Config var prefix, such as DATABASE")


class PlanName(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str


class AddonCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str | PlanName = Field(
        description='SERVICE or SERVICE:PLAN, such as postgres:standard (or {"name": …}, '
        "as the Heroku CLI sends it)"
    )
    attachment: AttachmentName | None = None
    name: str | None = Field(default=None, description="The add-on's name; random if not given")
    config: dict[str, Any] | None = Field(
        default=None, description='Provider options, such as {"version": "16"}'
    )
    confirm: str | None = Field(default=None, description="Accepted for Heroku's clients")


class AttachmentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    addon: str = Field(description="The add-on's name or id")
    app: str = Field(description="The app to attach it to, by name or id")
    name: str | None = Field(
        default=None, description="Config var prefix; the service's own if not given"
    )
    confirm: str | None = Field(default=None, description="Accepted for Heroku's clients")
    namespace: str | None = Field(default=None, description="Accepted for Heroku's clients")


def _manager(caller: Authenticated) -> Addons:
    found: Addons = caller.request.app.state.addons
    return found


def _service_ref(provider: Provider | str) -> Json:
    name = provider if isinstance(provider, str) else provider.service
    return {"id": str(uuid.uuid5(_NAMESPACE, name)), "name": name}


def _plan_ref(service: str, plan: str) -> Json:
    full = f"{service}:{plan}"
    return {"id": str(uuid.uuid5(_NAMESPACE, full)), "name": full}


def service_shape(provider: Provider) -> Json:
    return {
        **_service_ref(provider),
        "human_name": provider.human_name,
        "description": provider.description,
        "cli_plugin_name": None,
        "state": "ga",
        "supports_multiple_installations": True,
        "supports_sharing": True,
        "created_at": None,
        "updated_at": None,
    }


def plan_shape(provider: Provider, plan: Plan) -> Json:
    return {
        **_plan_ref(provider.service, plan.name),
        "human_name": plan.name.replace("-", " ").title(),
        "description": plan.description,
        "default": plan is provider.plans[0],
        "limits": dict(plan.limits),
        "price": {"cents": 0, "contract": False, "unit": "month"},
        "state": "public",
        "addon_service": _service_ref(provider),
        "compliance": None,
        "installable_inside_private_network": False,
        "installable_outside_private_network": True,
        "space_default": False,
        "visible": True,
        "created_at": None,
        "updated_at": None,
    }


def addon_shape(session: Session, catalog: Catalog, addon: Addon) -> Json:
    owned = [a for a in addons.attachments_of_addon(session, addon) if a.app_id == addon.app_id]
    names: list[str] = []
    if addon.state == "provisioned":
        provider = catalog.provider(addon.service)
        for attachment in owned:
            names += addons.config_names(provider, attachment.name)
    return {
        "id": str(addon.id),
        "name": addon.name,
        "addon_service": _service_ref(addon.service),
        "plan": _plan_ref(addon.service, addon.plan),
        "app": shapes.app_ref(addon.app),
        "state": addon.state,
        "provision_message": addon.failure,
        "config_vars": names,
        "actions": [],
        "billed_price": {"cents": 0, "contract": False, "unit": "month"},
        "billing_entity": {**shapes.app_ref(addon.app), "type": "app"},
        "provider_id": str(addon.id),
        "web_url": None,
        **shapes.times(addon),
    }


def attachment_shape(attachment: AddonAttachment) -> Json:
    addon = attachment.addon
    return {
        "id": str(attachment.id),
        "name": attachment.name,
        "addon": {"id": str(addon.id), "name": addon.name, "app": shapes.app_ref(addon.app)},
        "app": shapes.app_ref(attachment.app),
        "namespace": None,
        "web_url": None,
        "log_input_url": None,
        **shapes.times(attachment),
    }


def _page(request: Request, response: Response, found: list[Any]) -> list[Any]:
    return paginate(request, response, found, {"name": lambda a: a.name, "id": lambda a: a.id})


# --- add-ons ------------------------------------------------------------------------------


@router.get("/apps/{app}/addons", summary="List the add-ons an app owns or has attached")
def list_app_addons(
    caller: Authenticated, app: str, request: Request, response: Response
) -> list[Json]:
    catalog = _manager(caller).catalog
    with caller.transaction() as (session, user):
        found = addons.of_app(session, apps.find(session, user, app))
        return [addon_shape(session, catalog, a) for a in _page(request, response, found)]


@router.post(
    "/apps/{app}/addons",
    status_code=201,
    summary="Provision an add-on and attach it to the app; makes a release",
)
def create_addon(caller: Authenticated, app: str, body: AddonCreate) -> Json:
    manager = _manager(caller)
    addon_id = manager.create(
        caller.user_id,
        app,
        body.plan if isinstance(body.plan, str) else body.plan.name,
        name=body.name,
        attachment=body.attachment.name if body.attachment else None,
        options=body.config,
    )
    with caller.transaction() as (session, _user):
        addon = session.get(Addon, addon_id)
        if addon is None:
            raise NotFound("the add-on was destroyed before it could be shown")
        return addon_shape(session, manager.catalog, addon)


@router.get("/addons", summary="List the add-ons of every app the caller can see")
def list_addons(caller: Authenticated, request: Request, response: Response) -> list[Json]:
    catalog = _manager(caller).catalog
    with caller.transaction() as (session, user):
        found = addons.visible(session, user)
        return [addon_shape(session, catalog, a) for a in _page(request, response, found)]


@router.get("/addons/{addon}", summary="One add-on, by name or id")
def get_addon(caller: Authenticated, addon: str) -> Json:
    catalog = _manager(caller).catalog
    with caller.transaction() as (session, user):
        return addon_shape(session, catalog, addons.find(session, user, addon))


@router.get(
    "/apps/{app}/addons/{addon}", summary="One of an app's add-ons, by name, id or attachment name"
)
def get_app_addon(caller: Authenticated, app: str, addon: str) -> Json:
    catalog = _manager(caller).catalog
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return addon_shape(session, catalog, addons.find(session, user, addon, found))


def _destroy(caller: Authenticated, addon: str, app: str | None) -> Json:
    manager = _manager(caller)
    with caller.transaction() as (session, user):
        shown = addon_shape(
            session,
            manager.catalog,
            addons.find(session, user, addon, apps.find(session, user, app) if app else None),
        )
    manager.destroy(caller.user_id, addon, app)
    return {**shown, "state": "deprovisioned", "config_vars": []}


@router.delete("/addons/{addon}", summary="Deprovision an add-on; refused while attached elsewhere")
def delete_addon(caller: Authenticated, addon: str) -> Json:
    return _destroy(caller, addon, None)


@router.delete(
    "/apps/{app}/addons/{addon}",
    summary="Deprovision an app's add-on; refused while attached elsewhere",
)
def delete_app_addon(caller: Authenticated, app: str, addon: str) -> Json:
    return _destroy(caller, addon, app)


class AddonUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    plan: str | PlanName = Field(
        description="The new plan: PLAN or SERVICE:PLAN, such as postgres:premium"
    )
    name: str | None = Field(default=None, description="Accepted for Heroku's clients")


def _change_plan(caller: Authenticated, addon: str, app: str | None, body: AddonUpdate) -> Json:
    manager = _manager(caller)
    spec = body.plan if isinstance(body.plan, str) else body.plan.name
    with caller.transaction() as (session, user):
        found = addons.find(session, user, addon, apps.find(session, user, app) if app else None)
        addon_id = str(found.id)
    manager.change_plan(caller.user_id, addon_id, spec)
    with caller.transaction() as (session, user):
        return addon_shape(session, manager.catalog, addons.find(session, user, addon_id))


@router.patch(
    "/apps/{app}/addons/{addon}",
    summary="Move an app's add-on to another plan of its service (addons:upgrade, :downgrade)",
)
def update_app_addon(caller: Authenticated, app: str, addon: str, body: AddonUpdate) -> Json:
    return _change_plan(caller, addon, app, body)


@router.patch("/addons/{addon}", summary="Move an add-on to another plan of its service")
def update_addon(caller: Authenticated, addon: str, body: AddonUpdate) -> Json:
    return _change_plan(caller, addon, None, body)


@router.post(
    "/addons/{addon}/actions/rotate-credentials",
    summary="Dockyard: new credentials for an add-on, the old ones revoked; releases its apps",
)
def rotate_addon(caller: Authenticated, addon: str) -> Json:
    manager = _manager(caller)
    manager.rotate(caller.user_id, addon)
    with caller.transaction() as (session, user):
        return addon_shape(session, manager.catalog, addons.find(session, user, addon))


@router.get("/addons/{addon}/info", summary="Dockyard: what the provider reports about an add-on")
def addon_info(caller: Authenticated, addon: str) -> dict[str, str]:
    manager = _manager(caller)
    with caller.transaction() as (session, user):
        found = addons.find(session, user, addon)
        if found.state != "provisioned":
            return {
                "Status": found.state.title(),
                **({"Reason": found.failure} if found.failure else {}),
            }
        service, data = found.service, dict(found.provider_data)
    return manager.catalog.provider(service).info(data)


@router.get("/addons/{addon}/addon-attachments", summary="List an add-on's attachments")
def list_addon_attachments(caller: Authenticated, addon: str) -> list[Json]:
    with caller.transaction() as (session, user):
        found = addons.find(session, user, addon)
        return [
            attachment_shape(a)
            for a in addons.attachments_of_addon(session, found)
            if apps.may_access(session, user, a.app)
        ]


# --- attachments --------------------------------------------------------------------------


@router.get("/addon-attachments", summary="List the attachments of every app the caller can see")
def list_attachments(caller: Authenticated, request: Request, response: Response) -> list[Json]:
    with caller.transaction() as (session, user):
        found = [
            attachment
            for app in apps.visible(session, user)
            for attachment in addons.attachments_of_app(session, app)
        ]
        return [attachment_shape(a) for a in _page(request, response, found)]


@router.post(
    "/addon-attachments", status_code=201, summary="Attach an add-on to an app; makes a release"
)
def create_attachment(caller: Authenticated, body: AttachmentCreate) -> Json:
    attachment_id = _manager(caller).attach(caller.user_id, body.addon, body.app, body.name)
    with caller.transaction() as (session, _user):
        attachment = session.get(AddonAttachment, attachment_id)
        if attachment is None:
            raise NotFound("the attachment was removed before it could be shown")
        return attachment_shape(attachment)


@router.get("/addon-attachments/{attachment}", summary="One attachment, by id")
def get_attachment(caller: Authenticated, attachment: str) -> Json:
    with caller.transaction() as (session, user):
        return attachment_shape(addons.find_attachment(session, user, attachment))


@router.delete(
    "/addon-attachments/{attachment}", summary="Detach an add-on from an app; makes a release"
)
def delete_attachment(caller: Authenticated, attachment: str) -> Json:
    with caller.transaction() as (session, user):
        shown = attachment_shape(addons.find_attachment(session, user, attachment))
    _manager(caller).detach(caller.user_id, attachment)
    return shown


@router.get("/apps/{app}/addon-attachments", summary="List an app's attachments")
def list_app_attachments(
    caller: Authenticated, app: str, request: Request, response: Response
) -> list[Json]:
    with caller.transaction() as (session, user):
        found = addons.attachments_of_app(session, apps.find(session, user, app))
        return [attachment_shape(a) for a in _page(request, response, found)]


@router.get(
    "/apps/{app}/addon-attachments/{attachment}",
    summary="One of an app's attachments, by id, name or add-on name",
)
def get_app_attachment(caller: Authenticated, app: str, attachment: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return attachment_shape(addons.find_attachment(session, user, attachment, found))


@router.delete(
    "/apps/{app}/addon-attachments/{attachment}",
    summary="Detach an add-on from an app by attachment or add-on name; makes a release",
)
def delete_app_attachment(caller: Authenticated, app: str, attachment: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        shown = attachment_shape(addons.find_attachment(session, user, attachment, found))
    _manager(caller).detach(caller.user_id, attachment, app)
    return shown


# --- services and plans -------------------------------------------------------------------


@router.get("/addon-services", summary="List the add-on services on offer")
def list_services(caller: Authenticated) -> list[Json]:
    return [service_shape(p) for p in _manager(caller).catalog.services()]


@router.get("/addon-services/{service}", summary="One add-on service")
def get_service(caller: Authenticated, service: str) -> Json:
    return service_shape(_manager(caller).catalog.provider(service))


@router.get("/addon-services/{service}/plans", summary="List a service's plans, the default first")
def list_plans(caller: Authenticated, service: str) -> list[Json]:
    provider = _manager(caller).catalog.provider(service)
    return [plan_shape(provider, plan) for plan in provider.plans]


@router.get("/addon-services/{service}/plans/{plan}", summary="One plan of a service")
def get_plan(caller: Authenticated, service: str, plan: str) -> Json:
    provider, found = _manager(caller).catalog.plan(f"{service}:{plan.rpartition(':')[2]}")
    if plan.partition(":")[0] not in (plan, provider.service, service):
        raise InvalidParams(f"{plan} is not a plan of {provider.service}")
    return plan_shape(provider, found)
