"""``/apps/{app}/sni-endpoints``: an app's uploaded certificates (Heroku's SNI endpoint).

Each holds a certificate chain and its private key; the router presents it by SNI for the
app's hostnames it covers. The key goes in and never comes out: responses show the chain and
what it certifies (``ssl_cert``). A chain or key that cannot be served is refused with
422 ``invalid_params`` and a message saying why, and nothing is stored. ``GET /tls/ca`` gives
the platform's local CA certificate (public), for clients to trust.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import apps, certs
from dockyard.api import shapes
from dockyard.api.context import Authenticated
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.certs import platform
from dockyard.certs.pem import leaf_of
from dockyard.errors import InvalidParams, NotFound
from dockyard.settings import Settings
from dockyard.store import Certificate, Domain

router = APIRouter()


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    certificate_chain: str = Field(description="The PEM certificate chain (the .crt or .pem)")
    private_key: str = Field(description="The PEM private key (the .key), unencrypted")
    preprocess: bool | None = Field(default=None, description="Accepted for Heroku's clients")
    app: str | None = Field(default=None, description="Accepted for Heroku's clients")


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    certificate_chain: str = Field(description="The new PEM certificate chain")
    private_key: str = Field(description="The new PEM private key, unencrypted")
    preprocess: bool | None = Field(default=None, description="Accepted for Heroku's clients")
    rollback: bool | None = Field(default=None, description="Not supported; must be false")


def shape(session: Session, settings: Settings, row: Certificate) -> Json:
    """Heroku's SNI endpoint: the chain and what it certifies, never the key."""
    assert row.app is not None
    hosts = certs.routes(session, settings)
    names = certs.filters(tuple(row.hostnames), row.app.id, hosts)
    covered = session.scalars(
        select(Domain).where(Domain.app_id == row.app.id, Domain.hostname.in_(sorted(names)))
    )
    leaf = leaf_of(row.chain_pem)
    return {
        "id": str(row.id),
        "name": row.name,
        "display_name": None,
        "certificate_chain": row.chain_pem,
        "cname": None,
        "app": shapes.app_ref(row.app),
        "domains": sorted(str(d.id) for d in covered),
        "ssl_cert": {
            "id": str(row.id),
            "ca_signed?": leaf.issuer != leaf.subject,
            "self_signed?": leaf.issuer == leaf.subject,
            "cert_domains": list(row.hostnames),
            "starts_at": shapes.timestamp(row.starts_at),
            "expires_at": shapes.timestamp(row.expires_at),
            "issuer": row.issuer,
            "subject": row.subject,
            "expired?": row.expires_at <= datetime.now(UTC),
        },
        **shapes.times(row),
    }


@router.get("/apps/{app}/sni-endpoints", summary="List an app's uploaded certificates")
def list_endpoints(
    caller: Authenticated, app: str, request: Request, response: Response
) -> list[Json]:
    with caller.transaction() as (session, user):
        found = certs.for_app(session, apps.find(session, user, app), certs.UPLOADED)
        page = paginate(request, response, found, {"name": lambda c: c.name, "id": lambda c: c.id})
        return [shape(session, caller.settings, row) for row in page]


@router.post("/apps/{app}/sni-endpoints", status_code=201, summary="Upload a certificate")
def create_endpoint(caller: Authenticated, app: str, body: EndpointCreate) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        row = certs.save(session, caller.settings, found, body.certificate_chain, body.private_key)
        return shape(session, caller.settings, row)


@router.get("/apps/{app}/sni-endpoints/{endpoint}", summary="One uploaded certificate")
def get_endpoint(caller: Authenticated, app: str, endpoint: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return shape(session, caller.settings, certs.find(session, found, endpoint, certs.UPLOADED))


@router.patch("/apps/{app}/sni-endpoints/{endpoint}", summary="Replace a certificate and key")
def update_endpoint(caller: Authenticated, app: str, endpoint: str, body: EndpointUpdate) -> Json:
    if body.rollback:
        raise InvalidParams("rollback is not supported: upload the previous certificate instead")
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        row = certs.find(session, found, endpoint, certs.UPLOADED)
        certs.update(session, caller.settings, row, body.certificate_chain, body.private_key)
        return shape(session, caller.settings, row)


@router.delete("/apps/{app}/sni-endpoints/{endpoint}", summary="Remove an uploaded certificate")
def delete_endpoint(caller: Authenticated, app: str, endpoint: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        row = certs.find(session, found, endpoint, certs.UPLOADED)
        shown = shape(session, caller.settings, row)
        certs.remove(session, row)
        return shown


@router.get(
    "/tls/ca",
    summary="The local CA's certificate (PEM), which clients trust to reach apps over HTTPS",
    response_class=Response,
)
def local_ca(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    ca = platform.local_ca(settings)
    if not ca.certificate_path.exists():
        raise NotFound("the server has not made its local CA yet; it does when it starts")
    return Response(ca.certificate_path.read_text(), media_type="application/x-pem-file")
