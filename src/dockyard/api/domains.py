"""``/apps/{app}/domains``: the hostnames an app is served at (Heroku's domain resource).

The first is always the app's default hostname (``kind: default``, ``<app>.<domain>``); custom
ones (``kind: custom``) point their DNS at it, which ``cname`` says. Owners and collaborators
may add and remove custom domains; the router serves a new one at once. ``PATCH`` with
``{"sni_endpoint": "<name or id>"}`` (or null) associates a custom domain with one of the
app's uploaded certificates, which the router then serves for it before any other.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from dockyard import apps, certs, domains
from dockyard.api import shapes
from dockyard.api.context import Authenticated
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.settings import Settings

router = APIRouter()


class DomainCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    hostname: str = Field(description="Such as www.example.com, or *.example.com for a wildcard")
    sni_endpoint: str | None = Field(
        default=None,
        description="An uploaded certificate (SNI endpoint) of the app, by name or id, to serve "
        "the domain with; null for none",
    )


class DomainUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sni_endpoint: str | None = Field(
        description="An uploaded certificate (SNI endpoint) of the app, by name or id, that "
        "covers the hostname; null to undo the association"
    )


def shape(settings: Settings, found: domains.Hostname) -> Json:
    custom = found.kind == domains.CUSTOM
    return {
        "id": str(found.id),
        "hostname": found.hostname,
        "kind": found.kind,
        "cname": domains.default_hostname(settings, found.app.name) if custom else None,
        "status": "succeeded",
        "acm_status": found.acm_status,
        "acm_status_reason": found.acm_status_reason,
        "sni_endpoint": (
            {"id": str(found.sni_endpoint[0]), "name": found.sni_endpoint[1]}
            if found.sni_endpoint is not None
            else None
        ),
        "app": shapes.app_ref(found.app),
        "created_at": shapes.timestamp(found.created_at),
        "updated_at": shapes.timestamp(found.updated_at),
    }


@router.get("/apps/{app}/domains", summary="List an app's default and custom domains")
def list_domains(
    caller: Authenticated, app: str, request: Request, response: Response
) -> list[Json]:
    with caller.transaction() as (session, user):
        found = domains.hostnames(session, caller.settings, apps.find(session, user, app))
        page = paginate(
            request,
            response,
            found,
            {"hostname": lambda d: d.hostname, "id": lambda d: d.id},
        )
        return [shape(caller.settings, d) for d in page]


@router.post("/apps/{app}/domains", status_code=201, summary="Add a custom domain to an app")
def add_domain(caller: Authenticated, app: str, body: DomainCreate) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        added = domains.add(session, caller.settings, found, body.hostname)
        if body.sni_endpoint is not None:
            added = certs.associate(
                session, caller.settings, found, str(added.id), body.sni_endpoint
            )
        return shape(caller.settings, added)


@router.get("/apps/{app}/domains/{domain}", summary="One of an app's domains, by hostname or id")
def get_domain(caller: Authenticated, app: str, domain: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return shape(caller.settings, domains.find(session, caller.settings, found, domain))


@router.patch(
    "/apps/{app}/domains/{domain}",
    summary="Associate a custom domain with an uploaded certificate (SNI endpoint), or not",
)
def update_domain(caller: Authenticated, app: str, domain: str, body: DomainUpdate) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        return shape(
            caller.settings,
            certs.associate(session, caller.settings, found, domain, body.sni_endpoint),
        )


@router.delete("/apps/{app}/domains/{domain}", summary="Remove a custom domain from an app")
def delete_domain(caller: Authenticated, app: str, domain: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        return shape(caller.settings, domains.remove(session, caller.settings, found, domain))
