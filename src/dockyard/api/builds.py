"""``/apps/{app}/builds``, ``/sources``, ``/apps/{app}/build-cache`` and buildpack installations."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard import apps
from dockyard.api import shapes
from dockyard.api.context import Authenticated, Caller
from dockyard.api.paging import paginate
from dockyard.api.shapes import Json
from dockyard.builds import BuildService
from dockyard.errors import BadRequest, InvalidParams, NotFound, PayloadTooLarge
from dockyard.receive.http import MAX_SOURCE_BYTES, receive_file
from dockyard.signing import Signer
from dockyard.store import Build, Slug

router = APIRouter()
SOURCE_TTL = 3600


class SourceBlob(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(
        description="http(s) URL of a .tar or .tar.gz, e.g. a get_url from POST /sources"
    )
    version: str | None = Field(default=None, max_length=200)
    checksum: str | None = Field(default=None, max_length=80)
    version_description: str | None = None


class BuildpackRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(min_length=1, max_length=2000)
    name: str | None = None


class BuildCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_blob: SourceBlob
    buildpacks: list[BuildpackRef] | None = None


class BuildpackUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    buildpack: str = Field(min_length=1, max_length=2000)


class BuildpackInstallations(BaseModel):
    model_config = ConfigDict(extra="forbid")
    updates: list[BuildpackUpdate]


def _builds(request: Request) -> BuildService:
    service: BuildService = request.app.state.builds
    return service


def _signer(request: Request) -> Signer:
    signer: Signer = request.app.state.signer
    return signer


def build_json(caller: Caller, build: Build) -> Json:
    token = _signer(caller.request).sign("build-output", str(build.id), ttl=24 * 3600)
    base = caller.api_url.rstrip("/")
    return {
        "id": str(build.id),
        "app": {"id": str(build.app_id)},
        "status": build.status,
        "source_blob": {
            "url": build.source_url,
            "version": build.source_version,
            "checksum": build.source_checksum,
            "version_description": None,
        },
        "buildpacks": [{"url": url, "name": url} for url in build.buildpacks],
        "output_stream_url": f"{base}/streams/builds/{build.id}?token={token}",
        "slug": {"id": str(build.slug_id)} if build.slug_id else None,
        "release": {"id": str(build.release_id)} if build.release_id else None,
        "stack": build.stack,
        "user": shapes.user_ref(build.user),
        "failure_message": build.failure,
        **shapes.times(build),
    }


@router.get("/apps/{app}/builds", summary="List an app's builds")
def list_builds(
    caller: Authenticated, app: str, request: Request, response: Response
) -> list[Json]:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        rows = list(session.scalars(select(Build).where(Build.app_id == found.id)))
        page = paginate(
            request,
            response,
            rows,
            {"created_at": lambda b: b.created_at.isoformat(), "id": lambda b: b.id},
        )
        return [build_json(caller, b) for b in page]


@router.get("/apps/{app}/builds/{build}", summary="One build")
def get_build(caller: Authenticated, app: str, build: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return build_json(caller, _find_build(session, found.id, build))


def _find_build(session: Session, app_id: uuid.UUID, identity: str) -> Build:
    try:
        build_id = uuid.UUID(identity)
    except ValueError:
        build_id = None
    build = session.get(Build, build_id) if build_id else None
    if build is None or build.app_id != app_id:
        raise NotFound(f"Couldn't find build {identity}; `dockyard builds` lists them")
    return build


@router.post("/apps/{app}/builds", status_code=201, summary="Build from a source tarball URL")
async def create_build(caller: Authenticated, app: str, body: BuildCreate) -> Json:
    service = _builds(caller.request)
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        if body.buildpacks is not None:
            found.buildpacks = [b.url for b in body.buildpacks]
        app_id, user_id = found.id, user.id
    source = await _fetch_source(caller, body.source_blob.url, service)
    build_id = await asyncio.to_thread(
        service.create,
        app_id,
        user_id,
        source_url=body.source_blob.url,
        version=body.source_blob.version,
        checksum=body.source_blob.checksum,
    )

    async def run() -> None:
        try:
            await service.run(build_id, source)
        finally:
            source.unlink(missing_ok=True)

    service.background(run())
    with caller.transaction() as (session, _user):
        return build_json(caller, _find_build(session, app_id, str(build_id)))


async def _fetch_source(caller: Caller, url: str, service: BuildService) -> Path:
    """The tarball at ``url``: from the blob store for our own /sources URLs, else downloaded."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidParams("source_blob.url must be an http:// or https:// URL of a tarball")
    own = urlsplit(caller.api_url)
    if parts.netloc == own.netloc and parts.path.startswith("/sources/"):
        source_id = parts.path.removeprefix("/sources/")
        token = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p).get("token", "")
        if not _signer(caller.request).verify("source", source_id, token):
            raise InvalidParams("source_blob.url is a source URL that expired or was altered")
        return await asyncio.to_thread(service.copy_source, source_id)
    target = service.incoming / f"{uuid.uuid4()}.download"
    try:
        async with (
            httpx.AsyncClient(timeout=60, follow_redirects=True) as client,
            client.stream("GET", url) as reply,
        ):
            if reply.status_code != 200:
                raise InvalidParams(
                    f"source_blob.url answered HTTP {reply.status_code}; it must serve the tarball"
                )
            size = 0
            with target.open("wb") as handle:
                async for chunk in reply.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_SOURCE_BYTES:
                        raise PayloadTooLarge("the source tarball is over 2 GB")
                    handle.write(chunk)
    except httpx.HTTPError as exc:
        target.unlink(missing_ok=True)
        raise InvalidParams(f"source_blob.url could not be downloaded: {exc}") from exc
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


@router.get("/apps/{app}/slugs/{slug}", summary="One slug: its checksum, size and process types")
def get_slug(caller: Authenticated, app: str, slug: str) -> Json:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        try:
            slug_id = uuid.UUID(slug)
        except ValueError:
            slug_id = None
        row = session.get(Slug, slug_id) if slug_id else None
        if row is None or row.app_id != found.id:
            raise NotFound(f"Couldn't find slug {slug} of {found.name}")
        return {
            "id": str(row.id),
            "blob": None,
            "checksum": row.checksum,
            "size": row.size,
            "process_types": row.process_types,
            "commit": row.commit,
            "commit_description": row.commit_description,
            "buildpack_provided_description": row.buildpack_provided_description,
            "stack": {"id": row.stack, "name": row.stack},
            **shapes.times(row),
        }


@router.post(
    "/sources",
    status_code=201,
    summary="A place to upload a source tarball (put_url) for a build (get_url)",
)
def create_source(caller: Authenticated) -> Json:
    source_id = str(uuid.uuid4())
    token = _signer(caller.request).sign("source", source_id, ttl=SOURCE_TTL)
    url = f"{caller.api_url.rstrip('/')}/sources/{source_id}?token={token}"
    return {"source_blob": {"get_url": url, "put_url": url}}


@router.put("/sources/{source}", summary="Upload a source tarball to a put_url")
async def upload_source(request: Request, source: str, token: str = "") -> Response:
    if not _signer(request).verify("source", source, token):
        raise NotFound("this upload URL is not valid (any more); get a new one with POST /sources")
    service = _builds(request)
    path = await receive_file(request, service.incoming, MAX_SOURCE_BYTES)
    await asyncio.to_thread(service.store_source, source, path)
    return Response(status_code=200)


@router.get("/streams/builds/{build}", summary="A build's output, live while it runs (signed URL)")
async def build_output(request: Request, build: str, token: str = "") -> Response:
    if not _signer(request).verify("build-output", build, token):
        raise NotFound("this output URL is not valid (any more); get a new one from the build")
    try:
        build_id = uuid.UUID(build)
    except ValueError as exc:
        raise BadRequest("not a build id") from exc
    service = _builds(request)

    async def lines() -> AsyncIterator[str]:
        async for line in service.follow(build_id):
            yield line + "\n"

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")


@router.delete("/apps/{app}/build-cache", summary="Empty the app's build cache")
def purge_cache(caller: Authenticated, app: str) -> Response:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        app_id = found.id
    _builds(caller.request).purge_cache(app_id)
    return PlainTextResponse("", status_code=202)


@router.get("/apps/{app}/buildpack-installations", summary="The app's buildpacks, in order")
def list_buildpacks(caller: Authenticated, app: str) -> list[Json]:
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app)
        return _installations(found.buildpacks)


@router.put(
    "/apps/{app}/buildpack-installations", summary="Set the app's buildpacks (empty: detect)"
)
def set_buildpacks(caller: Authenticated, app: str, body: BuildpackInstallations) -> list[Json]:
    urls = [update.buildpack.strip() for update in body.updates]
    for url in urls:
        if not url.startswith(
            ("https://", "http://", "git@", "file://", "/", "builtin:", "ssh://")
        ):
            raise InvalidParams(
                f"buildpack {url!r} is not a git URL, a directory on the server or builtin:NAME"
            )
    if len(set(urls)) != len(urls):
        raise InvalidParams("a buildpack is listed twice")
    with caller.transaction() as (session, user):
        found = apps.find(session, user, app, lock=True)
        found.buildpacks = urls
        return _installations(urls)


def _installations(urls: list[str]) -> list[Json]:
    return [{"ordinal": n, "buildpack": {"url": url, "name": url}} for n, url in enumerate(urls)]
