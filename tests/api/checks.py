"""Assertions the API tests share: error bodies, and "nothing was written"."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
from sqlalchemy import select

from dockyard.store import Base, Database


def error(response: httpx2.Response, status: int, error_id: str, *fragments: str) -> str:
    """Check an error reply: its status, its ``{id, message}`` body, and what the message says."""
    assert response.status_code == status, response.text[:500]
    body = response.json()
    assert set(body) == {"id", "message"}, body
    assert body["id"] == error_id, body
    message: str = body["message"]
    for fragment in fragments:
        assert fragment.lower() in message.lower(), (fragment, message)
    assert response.headers["request-id"]
    return message


def dump(database: Database) -> dict[str, list[tuple[str, ...]]]:
    """Every row of every table, as text, in a stable order."""
    tables: dict[str, list[tuple[str, ...]]] = {}
    with database.engine.connect() as connection:
        for table in Base.metadata.sorted_tables:
            rows = connection.execute(select(table)).all()
            tables[table.name] = sorted(tuple(repr(value) for value in row) for row in rows)
    return tables


@contextmanager
def unchanged(database: Database) -> Iterator[None]:
    """Fail if the block writes anything to the state store."""
    before = dump(database)
    yield
    assert dump(database) == before, "the state store changed"


def ok(response: httpx2.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text[:500]
    return response.json()
