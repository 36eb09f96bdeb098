"""Who is calling, and the state store they call into.

Every endpoint but ``/healthz`` takes a :class:`Caller`: the request's bearer token (or the
password of HTTP basic auth, as ``git`` and ``~/.netrc`` send it) checked against the store.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from dockyard import accounts
from dockyard.errors import Unauthorized
from dockyard.settings import Settings
from dockyard.store import Database, User


def token_from(authorization: str) -> str | None:
    scheme, _, credentials = authorization.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() == "bearer" and credentials:
        return credentials
    if scheme.lower() == "basic" and credentials:
        try:
            decoded = base64.b64decode(credentials, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2] or None
    return None


class Caller:
    """The authenticated user of one request, and transactions on their behalf."""

    def __init__(self, request: Request, user_id: uuid.UUID) -> None:
        self.request = request
        self.user_id = user_id
        self.database: Database = request.app.state.database
        self.settings: Settings = request.app.state.settings

    @property
    def api_url(self) -> str:
        return str(self.request.base_url)

    @contextmanager
    def transaction(self) -> Iterator[tuple[Session, User]]:
        with self.database.transaction() as session:
            user = session.get(User, self.user_id)
            if user is None:
                raise Unauthorized("this token's user no longer exists")
            yield session, user


def authenticate(request: Request) -> Caller:
    header = request.headers.get("authorization", "")
    token = token_from(header)
    if token is None:
        raise Unauthorized(
            "Missing or malformed credentials: send 'Authorization: Bearer <API token>'. "
            "Get a token with `dockyard login` or `dockyard auth:token`."
        )
    database: Database = request.app.state.database
    with database.transaction() as session:
        user = accounts.authenticate(session, token)
        return Caller(request, user.id)


Authenticated = Annotated[Caller, Depends(authenticate)]
