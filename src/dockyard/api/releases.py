"""``/apps/{app}/config-vars``, ``/apps/{app}/releases`` and release phase output."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Body, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt
from sqlalchemy.orm import Session

from dockyard import apps, releases
from dockyard.api import shapes
from dockyard.api.context import Authenticated, Caller
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.blobs import BlobStore
from dockyard.errors import BadRequest, InvalidParams, NotFound
from dockyard.formation import RELEASE_TYPE
from dockyard.release_phase import RELEASE, ReleasePhase, output_key, stored_output
from dockyard.signing import Signer
from dockyard.store import App, Release, Slug

router = APIRouter()
# Signed output URLs: no token, no app, so none of the dependencies of ``router``'s routes.
streams = APIRouter()
OUTPUT_TTL = 24 * 3600


class Rollback(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Heroku's schema takes a release's id or its version number (an integer).
    release: str | StrictInt = Field(description="Id or version of the release to roll back to")


def _blobs(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.builds.blobs
    return blobs


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def _phase(request: Request) -> ReleasePhase | None:
    """The release phase's runner; None on a server that cannot run dynos."""
    phase: ReleasePhase | None = getattr(request.app.state, "release_phase", None)
    return phase


def release_json(caller: Caller, session: Session, app: App, release: Release) -> Json:
    """A release as Heroku shows it; ``output_stream_url`` when it has a release phase."""
    slug = session.get(Slug, release.slug_id) if release.slug_id is not None else None
    has_phase = (
        release.status == "pending" and slug is not None and (RELEASE_TYPE in slug.process_types)
    )
    url = None
    if has_phase or _blobs(caller.request).exists(output_key(RELEASE, release.id)):
        token = _signer(caller.request).sign("release-output", str(release.id), ttl=OUTPUT_TTL)
        url = f"{caller.api_url.rstrip('/')}/streams/releases/{release.id}?token={token}"
    return shapes.release(app, release, url)


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
        return releases.update_config(
            session, found, body, user, release_phase=_phase(caller.request) is not None
        )


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
        return [release_json(caller, session, found, r) for r in page]


@router.post(
    "/apps/{app}/releases", status_code=201, summary="Roll back: a new release from an old one"
)
def rollback(caller: Authenticated, app: str, body: Rollback) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        made = releases.rollback(
            session,
            found,
            str(body.release),
            user,
            limit=caller.settings.max_quantity,
            release_phase=_phase(caller.request) is not None,
        )
        return release_json(caller, session, found, made)


@router.get("/apps/{app}/releases/{release}", summary="One release, by id or version")
def get_release(caller: Authenticated, app: str, release: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return release_json(caller, session, found, releases.get(session, found, release))


@router.get("/apps/{app}/releases/{release}/config-vars", summary="The config vars of one release")
def release_config(caller: Authenticated, app: str, release: str) -> dict[str, str]:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return dict(releases.get(session, found, release).config)


@streams.get(
    "/streams/releases/{release}",
    summary="A release phase's output, live while it runs (signed URL)",
)
async def release_output(request: Request, release: str, token: str = "") -> Response:
    if not _signer(request).verify("release-output", release, token):
        raise NotFound("this output URL is not valid (any more); get a new one from the release")
    try:
        release_id = uuid.UUID(release)
    except ValueError as exc:
        raise BadRequest("not a release id") from exc
    phase = _phase(request)
    blobs = _blobs(request)

    async def lines() -> AsyncIterator[str]:
        if phase is None:  # dynos cannot run here: only what was kept
            for line in await asyncio.to_thread(
                stored_output, blobs, output_key(RELEASE, release_id)
            ):
                yield line + "\n"
            return
        async for line in phase.follow(RELEASE, release_id):
            yield line + "\n"

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")
