"""``/apps/{app}/acm``: Automated Certificate Management on or off, and refresh (Heroku's).

``POST`` enables it: every custom domain gets a certificate from the ACME CA, renewed before
it expires; ``DELETE`` disables it and removes those certificates; ``PATCH`` with
``{"acm_refresh": true}`` retries the domains whose order failed, now. Each answers the app.
The domains' ``acm_status`` and ``acm_status_reason`` (in ``/apps/{app}/domains``) say how
each is doing. The orders themselves run in the server (:mod:`dockyard.certs.renewal`).
"""

from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import apps
from dockyard.api import shapes
from dockyard.api.context import Authenticated
from dockyard.api.shapes import Json
from dockyard.certs import renewal
from dockyard.errors import InvalidParams
from dockyard.store import App, Domain

router = APIRouter()


class AcmUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    acm_refresh: bool = Field(description="true: order again, now, every domain that failed")


def _domains(session: Session, app: App) -> list[Domain]:
    return list(session.scalars(select(Domain).where(Domain.app_id == app.id)))


@router.post("/apps/{app}/acm", summary="Enable Automated Certificate Management for an app")
def enable_acm(caller: Authenticated, app: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        if not found.acm:
            found.acm = True
            for domain in _domains(session, found):
                domain.acm_status = renewal.PENDING
                domain.acm_status_reason = None
        session.flush()
        return shapes.app(caller.settings, caller.api_url, found)


@router.delete("/apps/{app}/acm", summary="Disable Automated Certificate Management for an app")
def disable_acm(caller: Authenticated, app: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        found.acm = False
        for domain in _domains(session, found):
            domain.acm_status = None
            domain.acm_status_reason = None
        renewal.forget_certificates(session, found)
        session.flush()
        return shapes.app(caller.settings, caller.api_url, found)


@router.patch("/apps/{app}/acm", summary="Refresh Automated Certificate Management for an app")
def refresh_acm(caller: Authenticated, app: str, body: AcmUpdate) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        if not found.acm:
            raise InvalidParams(
                f"Automated Certificate Management is not enabled on {found.name}; "
                f"`dockyard certs:auto:enable -a {found.name}` enables it"
            )
        if body.acm_refresh:
            for domain in _domains(session, found):
                if domain.acm_status != renewal.ISSUED:
                    domain.acm_status = renewal.PENDING
                    domain.acm_status_reason = None
        session.flush()
        return shapes.app(caller.settings, caller.api_url, found)
