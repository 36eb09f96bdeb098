"""git over smart HTTP: ``/<app>.git`` served by the real ``git http-backend`` (CGI).

The password of HTTP basic auth is an API token (the user name is ignored), so the
``~/.netrc`` written by ``dockyard login`` works as it is. Only the smart protocol's
``git-upload-pack`` and ``git-receive-pack`` are served.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import ClassVar

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse, StreamingResponse
from starlette.requests import ClientDisconnect
from starlette.types import Receive, Scope, Send

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


@functools.cache
def _http_backend() -> tuple[str, ...]:
    """git's CGI program, run so that it dies with the server instead of lingering."""
    exec_path = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return ("/usr/bin/setpriv", "--pdeathsig", "KILL", "--", f"{exec_path}/git-http-backend")

MAX_SOURCE_BYTES = 2 * 1024 * 1024 * 1024


def _challenge(message: str) -> Response:
    return PlainTextResponse(
        message + "\n", status_code=401, headers={"WWW-Authenticate": 'Basic realm="Dockyard"'}
    )


class GitBackend:
    """The ASGI app behind ``/<app>.git/...``.

    A raw ASGI app rather than a route returning a streaming response: it alone reads
    the request body (the pack), which must reach ``git http-backend`` whole, while the
    response streams back.
    """

    ROUTES: ClassVar[dict[tuple[str, str], str | None]] = {
        ("GET", "info/refs"): None,
        ("POST", "git-upload-pack"): "git-upload-pack",
        ("POST", "git-receive-pack"): "git-receive-pack",
    }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        rest = scope["path_params"]["rest"]
        if (request.method, rest) not in self.ROUTES:
            await PlainTextResponse("only git's smart HTTP protocol is served\n", 403)(
                scope, receive, send
            )
            return
        service = self.ROUTES[(request.method, rest)] or request.query_params.get("service", "")
        if service not in SERVICES:
            await PlainTextResponse("only git's smart HTTP protocol is served\n", 403)(
                scope, receive, send
            )
            return
        prepared = await asyncio.to_thread(_prepare, request, scope["path_params"]["app"])
        if isinstance(prepared, Response):
            await prepared(scope, receive, send)
            return
        await _serve(request, send, prepared, rest, service)


def _prepare(request: Request, app_name: str) -> Response | tuple[Ticket, str]:
    """Who is pushing or fetching, and the repository; or the reply that refuses them."""
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
    repos.ensure(ticket.app_id)
    return ticket, email


async def _serve(
    request: Request, send: Send, prepared: tuple[Ticket, str], rest: str, service: str
) -> None:
    repos: Repositories = request.app.state.repos
    ticket, email = prepared
    repo = ticket.repo
    push_token = repos.issue(ticket) if service == "git-receive-pack" else None
    env = _cgi_environment(request, repos.environment(push_token or "", ticket), repo, email, rest)
    process = await asyncio.create_subprocess_exec(
        *_http_backend(),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    assert process.stderr is not None
    stdin, stdout, stderr = process.stdin, process.stdout, process.stderr

    async def feed() -> None:
        try:
            async for chunk in request.stream():
                stdin.write(chunk)
                await stdin.drain()
        except (ClientDisconnect, ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(ConnectionError, OSError):
                stdin.close()

    async def drain_errors() -> None:
        while line := await stderr.readline():
            log.warning("git http-backend: %s", line.decode(errors="replace").rstrip())

    feeder = asyncio.create_task(feed())
    errors = asyncio.create_task(drain_errors())
    try:
        status, headers = await _cgi_headers(stdout)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        while chunk := await stdout.read(64 * 1024):
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
        feeder.cancel()
        await asyncio.gather(feeder, errors, return_exceptions=True)
        if push_token:
            repos.revoke(push_token)


def _cgi_environment(
    request: Request, env: dict[str, str], repo: Path, email: str, rest: str
) -> dict[str, str]:
    """The CGI variables git http-backend reads, on top of ``env``."""
    env = dict(
        env,
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
    return env


async def _cgi_headers(stdout: asyncio.StreamReader) -> tuple[int, list[tuple[bytes, bytes]]]:
    """The status and headers a CGI program printed before its body."""
    status: int = 200
    headers: list[tuple[bytes, bytes]] = []
    while True:
        line = await stdout.readline()
        if line in (b"\r\n", b"\n", b""):
            return status, headers
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "status":
            status = int(value.strip().split()[0])
        else:
            headers.append((name.strip().lower().encode(), value.strip().encode("latin-1")))


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

    async def updated() -> None:
        await repos.ended(token)

    async def build() -> bool:
        try:
            return await builds.run(build_id, source, before=unchanged, after=updated)
        finally:
            source.unlink(missing_ok=True)

    task = builds.background(build())

    async def lines() -> AsyncIterator[str]:
        known = False
        try:
            async for line in builds.follow(build_id):
                yield line + "\n"
            # The outcome is known once the output ends; the build's task then waits,
            # holding the app's build lock, for git to update the branch.
            succeeded = await asyncio.to_thread(builds.succeeded, build_id)
            known = True
            yield f"{STATUS_PREFIX}{'ok' if succeeded else 'failed'}\n"
        finally:
            if not known and not task.done():
                task.cancel()  # the pusher went away mid-build

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
