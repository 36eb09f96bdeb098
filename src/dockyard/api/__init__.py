"""The HTTP API: Heroku's Platform API v3 paths and shapes, served by FastAPI.

:func:`create_api` builds the ASGI app for a :class:`~dockyard.settings.Settings` and a
:class:`~dockyard.store.Database`; ``dockyard server`` runs it under uvicorn.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dockyard import __version__
from dockyard.addons import Addons, Catalog, dynos_restarted
from dockyard.api import (
    account,
    acm,
    addons,
    apps,
    builds,
    domains,
    drains,
    dynos,
    formation,
    logs,
    nodes,
    releases,
    sni_endpoints,
)
from dockyard.blobs import open_store
from dockyard.build.dockerfile import DockerfileBuilder
from dockyard.build.pipeline import Builder, Limits
from dockyard.builds import BuildService
from dockyard.errors import DockyardError, NotAcceptable, PayloadTooLarge
from dockyard.events import Events
from dockyard.logs import announce
from dockyard.logs.hub import LogHub
from dockyard.receive import http as receive_http
from dockyard.receive.repos import Repositories
from dockyard.settings import Settings
from dockyard.signing import Signer
from dockyard.store import Database

MAX_BODY = 1024 * 1024
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,200}$")
_VERSION = re.compile(r"application/vnd\.heroku\+json;\s*version=([^\s,;]+)")
_STATUS_IDS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
}
log = logging.getLogger("dockyard.api")


def _error(status: int, error_id: str, message: str) -> JSONResponse:
    return JSONResponse({"id": error_id, "message": message}, status_code=status)


class Edge:
    """Checks every request before routing: its size, its API version; tags it with an id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        given = headers.get("request-id", "")
        request_id = given if _REQUEST_ID.match(given) else str(uuid.uuid4())

        started = False

        async def send_tagged(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"request-id", request_id.encode()),
                ]
            await send(message)

        if _streams(scope["path"]):
            await self.app(scope, receive, send_tagged)
            return
        problem = self._problem(headers)
        if problem is not None:
            await _respond(problem, scope, receive, send_tagged)
            return
        if scope["method"] in ("POST", "PUT", "PATCH") and "json" not in headers.get(
            "content-type", ""
        ):
            # The API speaks only JSON; a body sent as anything else (curl's default) is read
            # as JSON.
            scope = {
                **scope,
                "headers": [
                    *((k, v) for k, v in scope["headers"] if k.lower() != b"content-type"),
                    (b"content-type", b"application/json"),
                ],
            }
        if "content-length" not in headers and scope["method"] in ("POST", "PUT", "PATCH"):
            # A body of unknown length (chunked) is read here, within the limit, and replayed.
            body = await _read_bounded(receive)
            if body is None:
                await _respond(PayloadTooLarge(_too_large()), scope, receive, send_tagged)
                return
            receive = _replay(body)
        try:
            await self.app(scope, receive, send_tagged)
        except Exception:
            # A bug, not a DockyardError: still answer {id, message} with the Request-Id that
            # the server's log shows, then let the server log the traceback.
            if not started:
                failed = DockyardError(
                    f"the server failed on this request; its log has the details under "
                    f"Request-Id {request_id}"
                )
                await _respond(failed, scope, receive, send_tagged)
            raise

    @staticmethod
    def _problem(headers: dict[str, str]) -> DockyardError | None:
        version = _VERSION.search(headers.get("accept", ""))
        # Variants of version 3 (the Heroku CLI asks for "3.sdk") get version 3.
        if version and version.group(1).partition(".")[0] != "3":
            return NotAcceptable(f"API version {version.group(1)} is not served; ask for version=3")
        length = headers.get("content-length", "0")
        if length.isdigit() and int(length) > MAX_BODY:
            return PayloadTooLarge(_too_large())
        return None


async def _read_bounded(receive: Receive) -> bytes | None:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _streams(path: str) -> bool:
    """git, push and upload endpoints take bodies of any type and size; handlers bound them."""
    return ".git/" in path or path.startswith(("/internal/", "/sources/"))


def _too_large() -> str:
    return f"request body is over {MAX_BODY} bytes (1 MB); send less"


async def _respond(error: DockyardError, scope: Scope, receive: Receive, send: Send) -> None:
    await _error(error.status, error.id, error.message)(scope, receive, send)


def _validation_message(exc: RequestValidationError) -> tuple[int, str, str]:
    problems = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return (
                400,
                "bad_request",
                f"request body is not valid JSON: {error.get('ctx', {}).get('error', '')}",
            )
        location = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        if error.get("type") == "extra_forbidden":
            problems.append(f"unknown field {location!r}")
        elif error.get("type") == "missing" and not location:
            problems.append("a JSON body is required")
        else:
            problems.append(f"{location or 'body'}: {error.get('msg')}")
    return 422, "invalid_params", "; ".join(problems) + ". See the API reference in docs/api.md."


def internal_url(settings: Settings) -> str:
    """How processes on this host (the pre-receive hook) reach the API."""
    host = settings.api_host
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 - matching the wildcard, not binding to it
        host = "127.0.0.1"
    return f"http://{'[' + host + ']' if ':' in host else host}:{settings.api_port}"


def build_limits(settings: Settings) -> Limits:
    return Limits(
        timeout=settings.build_timeout,
        slug_bytes=settings.slug_limit_mb * 1024 * 1024,
        disk_bytes=settings.build_disk_limit_mb * 1024 * 1024,
    )


def dockerfile_builder(settings: Settings) -> DockerfileBuilder | None:
    """Dockerfile apps are built with Docker when dynos run on it (docs/docker.md)."""
    if settings.runtime not in ("docker", "swarm"):
        return None
    return DockerfileBuilder(settings.docker_socket, settings.data_dir)


def create_api(settings: Settings, database: Database) -> FastAPI:
    api = FastAPI(
        title="Dockyard Platform API",
        version=__version__,
        description="Heroku Platform API v3 compatible. Send 'Accept: application/vnd.heroku+json; "
        "version=3' and 'Authorization: Bearer <token>'.",
        docs_url=None,
        redoc_url=None,
    )
    api.state.settings = settings
    api.state.database = database
    api.state.signer = Signer(settings.data_dir)
    api.state.events = Events()  # platform events, for the app's log stream
    # Every release shows in its app's logs: app[api]: Set FOO config vars by …, Release v7 …
    announce.releases(database, api.state.events)
    # Apps' log streams; `dockyard server` starts the hub and feeds it.
    api.state.logs = LogHub(
        settings.data_dir / "logs",
        ring_lines=settings.log_lines,
        history_bytes=settings.log_history_mb * 1024 * 1024,
    )
    api.state.builds = BuildService(
        settings,
        database,
        open_store(settings.blob_url),
        Builder(settings.data_dir, build_limits(settings), dockerfile=dockerfile_builder(settings)),
    )
    api.state.repos = Repositories(settings.data_dir, internal_url(settings))
    api.state.addons = Addons(
        database,
        Catalog.from_plugins(settings),
        # As for config changes: the release command runs only where dynos can run.
        release_phase=lambda: getattr(api.state, "release_phase", None) is not None,
        # A credential rotation revokes the old ones once the apps' dynos restarted.
        restarted=dynos_restarted(api.state),
    )
    api.state.builds.provision_addons = api.state.addons.provision_declared
    events = api.state.events
    api.state.builds.announce = lambda app_id, name, message, by: announce.api(
        events, app_id, name, message, by=by
    )

    @api.exception_handler(DockyardError)
    async def _dockyard_error(_request: Request, exc: DockyardError) -> JSONResponse:
        if exc.status >= 500:
            log.error("request failed: %s", exc.message, exc_info=exc.__cause__)
        return _error(exc.status, exc.id, exc.message)

    @api.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(*_validation_message(exc))

    @api.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
        message = str(exc.detail)
        if exc.status_code == 404:
            message = f"no such endpoint: {request.method} {request.url.path}; see docs/api.md"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}; see docs/api.md"
        return _error(exc.status_code, _STATUS_IDS.get(exc.status_code, "error"), message)

    @api.get("/healthz", summary="200 once the server is ready", include_in_schema=True)
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    api.include_router(account.router)
    api.include_router(apps.router)
    api.include_router(releases.router)
    api.include_router(releases.streams)
    api.include_router(builds.router)
    api.include_router(formation.router)
    api.include_router(dynos.router)
    api.include_router(domains.router)
    api.include_router(acm.router)
    api.include_router(sni_endpoints.router)
    api.include_router(addons.router)
    api.include_router(logs.router)
    api.include_router(drains.router)
    api.include_router(nodes.router)
    api.include_router(receive_http.router)
    api.router.routes.append(
        Route("/{app}.git/{rest:path}", receive_http.GitBackend(), methods=["GET", "POST"])
    )
    api.add_middleware(Edge)
    return api
