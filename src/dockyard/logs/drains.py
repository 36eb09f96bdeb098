"""Log drains: the URLs an app's log stream is also sent to (Heroku's log drains).

A drain is a row of :class:`~dockyard.store.LogDrain`: a URL, checked by
:mod:`dockyard.logs.drain_urls`, and a token ``d.<uuid>`` that names the drain in what it
receives. :mod:`dockyard.logs.drain_delivery` sends the lines;
:mod:`dockyard.logs.drain_frames` words them.
"""

from __future__ import annotations

import uuid

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from dockyard.accounts import parse_uuid
from dockyard.errors import InvalidParams, NotFound
from dockyard.logs.drain_urls import check_address, parse, redact
from dockyard.store import App, LogDrain

MAX_PER_APP = 20
TOKEN_PREFIX = "d."  # noqa: S105 - the prefix of drain tokens, not a secret


def new_token() -> str:
    return f"{TOKEN_PREFIX}{uuid.uuid4()}"


def listing(session: Session, app: App) -> list[LogDrain]:
    return list(
        session.scalars(
            select(LogDrain).where(LogDrain.app_id == app.id).order_by(LogDrain.created_at)
        )
    )


def add(session: Session, app: App, url: str, *, private: bool = False) -> LogDrain:
    """Add a drain to ``app`` (whose row the caller holds locked)."""
    target = parse(url)
    check_address(target, private=private)
    taken = session.scalar(
        select(LogDrain).where(LogDrain.app_id == app.id, LogDrain.url == target.url)
    )
    if taken is not None:
        raise InvalidParams(
            f"{app.name} already drains to {redact(target.url)} (token {taken.token})"
        )
    if len(listing(session, app)) >= MAX_PER_APP:
        raise InvalidParams(
            f"{app.name} has {MAX_PER_APP} drains, the most an app may have; remove one first"
        )
    drain = LogDrain(app_id=app.id, url=target.url, token=new_token(), app=app)
    session.add(drain)
    session.flush()
    return drain


def find(session: Session, app: App, identity: str) -> LogDrain:
    """A drain of ``app`` by its id, token or URL."""
    query = select(LogDrain).where(LogDrain.app_id == app.id)
    ids = [LogDrain.token == identity, LogDrain.url == identity.strip()]
    if (parsed := parse_uuid(identity)) is not None:
        ids.append(LogDrain.id == parsed)
    drain = session.scalar(query.where(or_(*ids)))
    if drain is None:
        raise NotFound(
            f"{app.name} has no drain {redact(identity)!r}; `dockyard drains` lists them"
        )
    return drain


def remove(session: Session, app: App, identity: str) -> LogDrain:
    drain = find(session, app, identity)
    session.delete(drain)
    session.flush()
    return drain
