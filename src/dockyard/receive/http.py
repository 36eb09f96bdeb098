"""git over smart HTTP: ``/<app>.git`` served by the real ``git http-backend`` (CGI).

The password of HTTP basic auth is an API token (the user name is ignored), so the
``~/.netrc`` written by ``dockyard login`` works as it is. Only the smart protocol's
``git-upload-pack`` and ``git-receive-pack`` are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse

from dockyard import accounts, apps
from dockyard.api.context import token_from
from dockyard.build.pipeline import BuildFailed
from dockyard.builds import BuildService
from dockyard.errors import NotFound, PayloadTooLarge, Unauthorized
from dockyard.receive.branches import ZERO
from dockyard.receive.hook import STATUS_PREFIX
from dockyard.receive.repos import Repositories, Ticket
from dockyard.store import Database

log = logging.getLogger("dockyard.receive")
router = APIRouter(include_in_schema=False)
SERVICES = ("git-upload-pack", "git-receive-pack")
MAX_SOURCE_BYTES = 2 * 1024 * 1024 * 1024


def _challenge(message: str) -> Response:
    return PlainTextResponse(
        message + "\n", status_code=401, headers={"WWW-Authenticate": 'Basic realm="Dockyard"'}
    )


@router.get("/{app}.git/info/refs")
async def info_refs(request: Request, app: str) -> Response:
    service = request.query_params.get("service", "")
    if service not in SERVICES:
        return PlainTextResponse("only git's smart HTTP protocol is served\n", status_code=403)
    return await _serve(request, app, "info/refs", service)


@router.post("/{app}.git/git-upload-pack")
async def upload_pack(request: Request, app: str) -> Response:
    return await _serve(request, app, "git-upload-pack", "git-upload-pack")


@router.post("/{app}.git/git-receive-pack")
async def receive_pack(request: Request, app: str) -> Response:
    return await _serve(request, app, "git-receive-pack", "git-receive-pack")


async def _serve(request: Request, app_name: str, rest: str, service: str) -> Response:
    database: Database = request.app.state.database
    repos: Repositories = request.app.state.repos
    token = token_from(request.headers.get("authorization", ""))
    if token is None:
        return _challenge("Log in with `dockyard login`; git uses the token saved in ~/.netrc")
    try:
        with database.transaction() as session:
            user = accounts.authenticate(session, token)
            app = apps.find(session, user, app_name)
            ticket = Ticket(app.id, user.id, repos.path(app.id), app.deploy_branch)
            email = user.email
    except Unauthorized as exc:
        return _challenge(exc.message)
    except NotFound:
        return PlainTextResponse(f"Couldn't find that app: {app_name}\n", status_code=404)
    repo = await asyncio.to_thread(repos.ensure, ticket.app_id)
    push_token = repos.issue(ticket) if service == "git-receive-pack" else None
    env = repos.environment(push_token or "", ticket)
    env.update(
        GIT_PROJECT_ROOT=str(repo.parent),
        GIT_HTTP_EXPORT_ALL="1",
        PATH_INFO=f"/{repo.name}/{rest}",
        REQUEST_METHOD=request.method,
        QUERY_STRING=request.url.query,
        CONTENT_TYPE=request.headers.get("content-type", ""),
        REMOTE_USER=email,
        REMOTE_ADDR=request.client.host if request.client else "",
    )
    for header in ("content-encoding", "git-protocol"):
        if value := request.headers.get(header):
            env["HTTP_" + header.upper().replace("-", "_")] = value
    if length := request.headers.get("content-length"):
        env["CONTENT_LENGTH"] = length
    process = await asyncio.create_subprocess_exec(
        "git",
        "http-backend",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None and process.stdout is not None and process.stderr is not None
    stdin, stdout, stderr = process.stdin, process.stdout, process.stderr

    async def feed() -> None:
        try:
            async for chunk in request.stream():
                stdin.write(chunk)
                await stdin.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                stdin.close()

    async def drain_errors() -> None:
        while line := await stderr.readline():
            log.warning("git http-backend: %s", line.decode(errors="replace").rstrip())

    feeder = asyncio.create_task(feed())
    errors = asyncio.create_task(drain_errors())
    status, headers = 200, {}
    while True:
        line = await stdout.readline()
        if line in (b"\r\n", b"\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers[name.strip()] = value.strip()

    async def body() -> AsyncIterator[bytes]:
        try:
            while chunk := await stdout.read(64 * 1024):
                yield chunk
        finally:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
            await process.wait()
            feeder.cancel()
            await errors
            if push_token:
                repos.revoke(push_token)

    return StreamingResponse(body(), status_code=status, headers=headers)


@router.post("/internal/pushes/{token}")
async def push(request: Request, token: str) -> Response:
    """Called by the pre-receive hook with the pushed commit as a tarball."""
    repos: Repositories = request.app.state.repos
    builds: BuildService = request.app.state.builds
    ticket = repos.tickets.get(token)
    if ticket is None:
        return PlainTextResponse("this push URL is not valid (any more)\n", status_code=404)
    ref = request.headers.get("x-dockyard-ref", "")
    old = request.headers.get("x-dockyard-old", ZERO)
    new = request.headers.get("x-dockyard-new", "")
    source = await receive_file(request, builds.incoming, MAX_SOURCE_BYTES)
    build_id = await asyncio.to_thread(
        builds.create, ticket.app_id, ticket.user_id, source_url=None, version=new
    )

    async def unchanged() -> None:
        current = await asyncio.to_thread(repos.head, ticket.repo, ref)
        if current != (None if old == ZERO else old):
            raise BuildFailed(
                f"{ref.removeprefix('refs/heads/')} was updated by another push while this one "
                "waited; fetch, then push again"
            )

    task = asyncio.create_task(builds.run(build_id, source, before=unchanged))

    async def lines() -> AsyncIterator[str]:
        try:
            async for line in builds.follow(build_id):
                yield line + "\n"
            succeeded = await task
            yield f"{STATUS_PREFIX}{'ok' if succeeded else 'failed'}\n"
        finally:
            if not task.done():
                task.cancel()
            source.unlink(missing_ok=True)

    return StreamingResponse(lines(), media_type="text/plain; charset=utf-8")


async def receive_file(request: Request, directory: Path, limit: int) -> Path:
    """Write the request body to a new file in ``directory``, refusing more than ``limit``."""
    handle = tempfile.NamedTemporaryFile(dir=directory, prefix=f"{uuid.uuid4()}-", delete=False)  # noqa: SIM115 - kept on success
    path = Path(handle.name)
    size = 0
    try:
        with handle:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"the upload is over {limit // (1024 * 1024)} MB")
                await asyncio.to_thread(handle.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path
