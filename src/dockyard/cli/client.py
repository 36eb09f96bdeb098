"""The API client the commands use: Heroku's headers, ``Range`` paging and errors.

:func:`connect` finds the server (``$DOCKYARD_API_URL``, else the saved login) and the token
(``$DOCKYARD_API_KEY``, else ``~/.netrc`` for the API host). Every httpx error is turned into
:class:`~dockyard.cli.errors.Unreachable` here, and every error answer into
:class:`~dockyard.cli.errors.ApiError` carrying the API's own message.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from dockyard import __version__
from dockyard.cli import credentials
from dockyard.cli.errors import ApiError, NotLoggedIn, Unreachable

ACCEPT = "application/vnd.heroku+json; version=3"
TIMEOUT = 30.0
Json = dict[str, Any]


def segment(value: str) -> str:
    """``value`` quoted to sit in one URL path segment."""
    return quote(value, safe="@~")


def api_host(url: str) -> str:
    """The host name of an API URL: the netrc ``machine`` (without port, as curl looks it up)."""
    host = urlsplit(url).hostname
    if not host:
        raise Unreachable(
            f"{url!r} is not an API URL; give one like http://127.0.0.1:5100 "
            "(in $DOCKYARD_API_URL or `dockyard login --api-url`)"
        )
    return host


class Client:
    """A session with the API as one user (or none, for :meth:`anonymous` use)."""

    def __init__(self, url: str, token: str | None) -> None:
        self.url = url.rstrip("/")
        headers = {"Accept": ACCEPT, "User-Agent": f"dockyard-cli/{__version__}"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        try:
            self._http = httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._unreachable(exc) from exc

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _unreachable(self, exc: Exception) -> Unreachable:
        return Unreachable(f"cannot reach the Dockyard API at {self.url}: {exc}")

    def request(
        self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        try:
            response = self._http.request(method, path, json=json, headers=headers)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise self._unreachable(exc) from exc
        if response.status_code >= 400:
            raise self._error(response)
        return response

    def _error(self, response: httpx.Response) -> ApiError:
        try:
            body = response.json()
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            return ApiError(
                body["message"], status=response.status_code, id=str(body.get("id", ""))
            )
        text = " ".join(response.text.split())[:200]
        reason = f"{response.status_code} {response.reason_phrase}".strip()
        return ApiError(
            f"the API at {self.url} answered {reason}" + (f": {text}" if text else ""),
            status=response.status_code,
            id="",
        )

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise Unreachable(
                f"the server at {self.url} did not answer with JSON; is it a Dockyard API?"
            ) from exc

    def get(self, path: str) -> Any:
        return self._json(self.request("GET", path))

    def post(self, path: str, body: Any = None) -> Any:
        return self._json(self.request("POST", path, json=body))

    def patch(self, path: str, body: Any) -> Any:
        return self._json(self.request("PATCH", path, json=body))

    def put(self, path: str, body: Any) -> Any:
        return self._json(self.request("PUT", path, json=body))

    def delete(self, path: str) -> Any:
        return self._json(self.request("DELETE", path))

    def pages(self, path: str, range_: str | None = None) -> Iterator[Json]:
        """Every item of a listing, asking for the next page while the answer is 206."""
        asked = range_
        while True:
            response = self.request("GET", path, headers={"Range": asked} if asked else None)
            items = self._json(response)
            if not isinstance(items, list):
                raise Unreachable(f"the API at {self.url} did not answer {path} with a list")
            yield from items
            following = response.headers.get("Next-Range")
            if response.status_code != 206 or not following or following == asked:
                return
            asked = following

    def listing(self, path: str, range_: str | None = None, limit: int | None = None) -> list[Json]:
        items: list[Json] = []
        for item in self.pages(path, range_):
            items.append(item)
            if limit is not None and len(items) >= limit:
                break
        return items


def token() -> str:
    """The API token: ``$DOCKYARD_API_KEY``, else the ``~/.netrc`` entry for the API host."""
    if from_env := os.environ.get("DOCKYARD_API_KEY"):
        return from_env
    url = credentials.api_url()
    entry = credentials.read_netrc(api_host(url))
    if entry is None:
        raise NotLoggedIn(f"not logged in to {url}: run `dockyard login` (or set DOCKYARD_API_KEY)")
    return entry.password


def connect() -> Client:
    """A client for the configured server, as the logged-in user."""
    return Client(credentials.api_url(), token())
