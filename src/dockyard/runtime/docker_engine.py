"""A small typed client for the Docker Engine API, over its unix socket (httpx).

Only what Dockyard uses: images (inspect, build, import, tag, push, remove), containers
(create, start, kill, wait, inspect, list, remove, stats, resize), their logs and a Swarm
service's as a stream of :class:`LogRecord`, attaching to a container's stdio
(:func:`attach`, a hijacked connection), and a swarm's services, tasks and nodes. The API
version is pinned (:data:`API_VERSION`, Debian bookworm's Docker 20.10 speaks it, and newer
engines still do), so replies keep their shape. Every failure of the
engine or of the socket is raised as :class:`EngineError` (:class:`EngineNotFound` for a 404).
"""

from __future__ import annotations

import asyncio
import base64
import json
import struct
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx

from dockyard.runtime import DynoError

API_VERSION = "1.41"
SOCKET = Path("/var/run/docker.sock")
# Frames of a stream without a terminal: stream byte, 3 zero bytes, payload length.
_FRAME = struct.Struct(">BxxxI")
_STREAMS = {1: "stdout", 2: "stderr"}


class EngineError(DynoError):
    """The Docker engine refused a request, failed it, or could not be reached."""


class EngineNotFound(EngineError):
    """The image or container asked for does not exist."""


@dataclass(frozen=True)
class LogRecord:
    """One record of a container's log: ``time`` as the engine gives it (RFC 3339, ns)."""

    stream: str
    time: str
    text: str


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message") or response.text)
    except ValueError:
        return response.text.strip() or response.reason_phrase


def split_frames(buffer: bytearray) -> list[tuple[str, bytes]]:
    """Take the whole multiplexed frames off the front of ``buffer``."""
    frames = []
    while len(buffer) >= _FRAME.size:
        kind, length = _FRAME.unpack_from(buffer)
        if len(buffer) < _FRAME.size + length:
            break
        payload = bytes(buffer[_FRAME.size : _FRAME.size + length])
        del buffer[: _FRAME.size + length]
        frames.append((_STREAMS.get(kind, "stdout"), payload))
    return frames


async def file_chunks(path: Path) -> AsyncIterator[bytes]:
    """A file's bytes, a megabyte at a time, read in a thread (a build context to send)."""
    with path.open("rb") as handle:
        while chunk := await asyncio.to_thread(handle.read, 1 << 20):
            yield chunk


class Engine:
    """The Docker engine behind ``socket``; use as an async context manager or close()."""

    def __init__(self, socket: Path = SOCKET) -> None:
        self.socket = socket
        self._client = httpx.AsyncClient(
            transport=httpx.AsyncHTTPTransport(uds=str(socket)),
            base_url=f"http://docker/v{API_VERSION}",
            timeout=httpx.Timeout(60.0, connect=5.0),
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=20),
        )

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.aclose()

    # -- plumbing ------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = 60.0,
        ok: tuple[int, ...] = (),
    ) -> httpx.Response:
        """One request; an error reply (other than the ``ok`` statuses) raises EngineError."""
        try:
            response = await self._client.request(
                method, path, params=params, json=body, timeout=timeout
            )
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc
        self._check(response, ok)
        return response

    def _unreachable(self, exc: Exception) -> EngineError:
        return EngineError(f"the Docker engine at {self.socket} did not answer: {exc}")

    def _check(self, response: httpx.Response, ok: tuple[int, ...] = ()) -> None:
        if response.status_code < 400 or response.status_code in ok:
            return
        message = _message(response)
        if response.status_code == 404:
            raise EngineNotFound(message)
        raise EngineError(f"Docker: {message}")

    async def _json_stream(
        self,
        method: str,
        path: str,
        *,
        params: Sequence[tuple[str, str | int | float | bool | None]],
        content: AsyncIterable[bytes] | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        on_line: Callable[[dict[str, Any]], None],
    ) -> None:
        """A request whose reply is JSON lines (build, import): each to ``on_line``;
        a line with an ``error`` raises it."""
        try:
            async with self._client.stream(
                method,
                path,
                params=tuple(params),
                content=content,
                headers=headers,
                timeout=None,
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response)
                buffer = b""
                async for chunk in response.aiter_bytes():
                    buffer += chunk
                    *lines, buffer = buffer.split(b"\n")
                    for raw in lines:
                        self._json_line(raw, on_line)
                self._json_line(buffer, on_line)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    @staticmethod
    def _json_line(raw: bytes, on_line: Callable[[dict[str, Any]], None]) -> None:
        if not raw.strip():
            return
        try:
            line = json.loads(raw)
        except ValueError:
            return
        if isinstance(line, dict):
            if line.get("error"):
                raise EngineError(str(line.get("error")).strip())
            on_line(line)

    # -- the engine ----------------------------------------------------------------------

    async def version(self) -> dict[str, Any]:
        reply: dict[str, Any] = (await self.request("GET", "/version", timeout=5.0)).json()
        return reply

    # -- images --------------------------------------------------------------------------

    async def image(self, reference: str) -> dict[str, Any] | None:
        """The image's inspection, None when there is no such image here."""
        try:
            response = await self.request("GET", f"/images/{quote(reference, safe='')}/json")
        except EngineNotFound:
            return None
        reply: dict[str, Any] = response.json()
        return reply

    async def images(self, labels: Mapping[str, str]) -> list[dict[str, Any]]:
        filters = {"label": [f"{k}={v}" for k, v in labels.items()]}
        response = await self.request(
            "GET", "/images/json", params={"filters": json.dumps(filters)}
        )
        reply: list[dict[str, Any]] = response.json()
        return reply

    async def build(
        self,
        context: AsyncIterable[bytes],
        *,
        tag: str,
        labels: Mapping[str, str] | None = None,
        build_args: Mapping[str, str] | None = None,
        on_output: Callable[[str], None] = lambda _line: None,
    ) -> None:
        """Build an image from a tar ``context`` (its ``Dockerfile``); never pulls."""
        params = [
            ("t", tag),
            ("rm", "1"),
            ("forcerm", "1"),
            ("pull", "0"),
            ("labels", json.dumps(dict(labels or {}))),
            ("buildargs", json.dumps(dict(build_args or {}))),
        ]

        def line(record: dict[str, Any]) -> None:
            if "stream" in record:
                on_output(str(record["stream"]))

        await self._json_stream(
            "POST",
            "/build",
            params=params,
            content=context,
            headers={"Content-Type": "application/x-tar"},
            on_line=line,
        )

    async def import_image(
        self, tarball: AsyncIterable[bytes], *, repository: str, tag: str, changes: list[str]
    ) -> None:
        """``docker import``: an image of one layer from a root filesystem's tar stream."""
        params = [("fromSrc", "-"), ("repo", repository), ("tag", tag)]
        params += [("changes", change) for change in changes]
        await self._json_stream(
            "POST",
            "/images/create",
            params=params,
            content=tarball,
            headers={"Content-Type": "application/x-tar"},
            on_line=lambda _record: None,
        )

    async def tag(self, image: str, repository: str, tag: str) -> None:
        await self.request(
            "POST", f"/images/{quote(image, safe='')}/tag", params={"repo": repository, "tag": tag}
        )

    async def push(self, reference: str) -> None:
        """Push an image (``registry:port/repository:tag``) to its registry."""
        name, _, tag = reference.rpartition(":")
        await self._json_stream(
            "POST",
            f"/images/{quote(name, safe='')}/push",
            params=[("tag", tag)],
            # No credentials: the platform's registry trusts the cluster's network.
            headers={"X-Registry-Auth": base64.b64encode(b"{}").decode()},
            on_line=lambda _record: None,
        )

    async def remove_image(self, reference: str) -> None:
        """Remove an image (or one of its tags); one a container uses stays (409)."""
        await self.request(
            "DELETE", f"/images/{quote(reference, safe='')}", params={"noprune": "0"}, ok=(404, 409)
        )

    # -- containers ----------------------------------------------------------------------

    async def create(self, name: str, config: Mapping[str, Any]) -> str:
        response = await self.request(
            "POST", "/containers/create", params={"name": name}, body=config
        )
        return str(response.json()["Id"])

    async def start(self, container: str) -> None:
        await self.request("POST", f"/containers/{container}/start", ok=(304,))

    async def kill(self, container: str, signal: str) -> bool:
        """Signal the container's init; False when it does not run (any more)."""
        response = await self.request(
            "POST", f"/containers/{container}/kill", params={"signal": signal}, ok=(404, 409)
        )
        return response.status_code < 400

    async def wait(self, container: str, condition: str = "not-running") -> int:
        """Until the container stops; its exit status."""
        response = await self.request(
            "POST", f"/containers/{container}/wait", params={"condition": condition}, timeout=None
        )
        return int(response.json().get("StatusCode", -1))

    async def inspect(self, container: str) -> dict[str, Any] | None:
        try:
            response = await self.request("GET", f"/containers/{container}/json")
        except EngineNotFound:
            return None
        reply: dict[str, Any] = response.json()
        return reply

    async def containers(self, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
        """Every container (running or not) with these labels (None: with any value)."""
        filters = {"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]}
        response = await self.request(
            "GET", "/containers/json", params={"all": "1", "filters": json.dumps(filters)}
        )
        reply: list[dict[str, Any]] = response.json()
        return reply

    async def remove(self, container: str) -> None:
        await self.request(
            "DELETE", f"/containers/{container}", params={"force": "1", "v": "1"}, ok=(404, 409)
        )

    async def stats(self, container: str) -> dict[str, Any]:
        response = await self.request(
            "GET", f"/containers/{container}/stats", params={"stream": "0", "one-shot": "1"}
        )
        reply: dict[str, Any] = response.json()
        return reply

    async def resize(self, container: str, rows: int, columns: int) -> None:
        await self.request(
            "POST", f"/containers/{container}/resize", params={"h": rows, "w": columns}, ok=(409,)
        )

    async def logs(
        self,
        container: str,
        *,
        since: str | None = None,
        follow: bool = True,
        kind: str = "containers",
    ) -> AsyncIterator[LogRecord]:
        """The container's log (stdout and stderr, with the engine's timestamps), with
        ``follow`` followed until the container stops, else what it holds now. ``since``
        (seconds since the epoch, with nanoseconds) starts there, inclusive. With ``kind``
        ``"services"``, a Swarm service's: its tasks' on every node, through the manager."""
        params = {"follow": str(int(follow)), "stdout": "1", "stderr": "1", "timestamps": "1"}
        if since is not None:
            params["since"] = since
        try:
            async with self._client.stream(
                "GET", f"/{kind}/{container}/logs", params=params, timeout=None
            ) as response:
                if response.status_code >= 400:
                    await response.aread()
                    self._check(response)
                buffer = bytearray()
                async for chunk in response.aiter_bytes():
                    buffer += chunk
                    for stream, payload in split_frames(buffer):
                        stamp, _, text = payload.decode("utf-8", "replace").partition(" ")
                        yield LogRecord(stream, stamp, text)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from exc

    async def attach(self, container: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The container's stdin, stdout and stderr as one hijacked connection.

        Raw bytes both ways on a terminal; else the output comes as multiplexed frames
        (:func:`split_frames`). Attach before the start to miss nothing.
        """
        query = urlencode({"stream": "1", "stdin": "1", "stdout": "1", "stderr": "1"})
        path = f"/v{API_VERSION}/containers/{container}/attach?{query}"
        try:
            reader, writer = await asyncio.open_unix_connection(str(self.socket))
        except OSError as exc:
            raise self._unreachable(exc) from exc
        request = (
            f"POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\n"
            "Upgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        try:
            writer.write(request.encode())
            await writer.drain()
            async with asyncio.timeout(30):
                head = await reader.readuntil(b"\r\n\r\n")
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            TimeoutError,
        ) as exc:
            writer.close()
            raise self._unreachable(exc) from exc
        status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or parts[1] not in ("101", "200"):
            writer.close()
            if len(parts) >= 2 and parts[1] == "404":
                raise EngineNotFound(f"no container {container}")
            raise EngineError(f"Docker refused to attach to {container}: {status_line}")
        return reader, writer

    # -- a swarm (on a manager) ----------------------------------------------------------

    async def services(self, labels: Mapping[str, str | None]) -> list[dict[str, Any]]:
        """The swarm's services with these labels (None: with any value)."""
        filters = {"label": [k if v is None else f"{k}={v}" for k, v in labels.items()]}
        response = await self.request(
            "GET", "/services", params={"filters": json.dumps(filters)}, timeout=10.0
        )
        reply: list[dict[str, Any]] = response.json()
        return reply

    async def create_service(self, spec: Mapping[str, Any]) -> str:
        response = await self.request("POST", "/services/create", body=spec, timeout=30.0)
        return str(response.json()["ID"])

    async def update_service(self, service: str, version: int, spec: Mapping[str, Any]) -> None:
        await self.request(
            "POST",
            f"/services/{quote(service, safe='')}/update",
            params={"version": str(version)},
            body=spec,
            timeout=30.0,
        )

    async def remove_service(self, service: str) -> None:
        await self.request("DELETE", f"/services/{quote(service, safe='')}", ok=(404,))

    async def tasks(self, filters: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
        response = await self.request(
            "GET", "/tasks", params={"filters": json.dumps(dict(filters))}, timeout=10.0
        )
        reply: list[dict[str, Any]] = response.json()
        return reply

    async def nodes(self) -> list[dict[str, Any]]:
        reply: list[dict[str, Any]] = (await self.request("GET", "/nodes", timeout=10.0)).json()
        return reply

    async def info(self) -> dict[str, Any]:
        reply: dict[str, Any] = (await self.request("GET", "/info", timeout=10.0)).json()
        return reply
