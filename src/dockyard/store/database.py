"""The connection to the state store: engines, sessions and transactions.

SQLite runs in WAL mode with every transaction taking the write lock up front
(``BEGIN IMMEDIATE``), so read-modify-write sequences never interleave; on PostgreSQL
the same sequences lock the app's row (``SELECT … FOR UPDATE``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine, create_engine, event, make_url
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from dockyard.errors import Conflict, DockyardError, StoreError

M = TypeVar("M")
R = TypeVar("R")


@dataclass(frozen=True)
class _RowWatcher(Generic[M, R]):
    model: type[M]
    describe: Callable[[Session, M], R]
    callback: Callable[[list[R]], None]


def engine_url(url: str) -> str:
    """Pick the psycopg 3 driver for plain ``postgresql://`` URLs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def create_store_engine(url: str) -> Engine:
    parsed = make_url(engine_url(url))
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed, connect_args={"check_same_thread": False, "timeout": 30})
        _sqlite_pragmas(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class Database:
    """The state store: one engine and the sessions made from it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_store_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._watchers: list[tuple[tuple[type, ...], Callable[[], None]]] = []
        self._row_watchers: list[_RowWatcher[Any, Any]] = []
        event.listen(self._sessions, "after_flush", self._note_changes)
        event.listen(self._sessions, "before_commit", self._describe_new_rows)
        event.listen(self._sessions, "after_commit", self._tell_watchers)
        event.listen(self._sessions, "after_rollback", self._forget_changes)

    def on_commit(self, models: tuple[type, ...], callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit that added, changed or deleted one of ``models``.

        It runs in the committing thread, so it must be thread-safe and quick.
        """
        self._watchers.append((models, callback))

    def on_new_rows(
        self,
        model: type[M],
        describe: Callable[[Session, M], R],
        callback: Callable[[list[R]], None],
    ) -> None:
        """After each commit that added ``model`` rows, ``callback`` with ``describe`` of each.

        ``describe(session, row)`` runs just before the commit, in its transaction (it may
        read related rows); ``callback`` after it, in the committing thread, so it must be
        thread-safe and quick. Nothing is called for a transaction that rolls back.
        """
        self._row_watchers.append(_RowWatcher(model, describe, callback))

    def _note_changes(self, session: Session, _context: Any) -> None:
        touched = session.info.setdefault("touched", set())
        for instance in (*session.new, *session.dirty, *session.deleted):
            touched.add(type(instance))
        if self._row_watchers:
            added = session.info.setdefault("added", [])
            added.extend(
                instance
                for instance in session.new
                if any(isinstance(instance, w.model) for w in self._row_watchers)
            )

    def _describe_new_rows(self, session: Session) -> None:
        if not self._row_watchers:
            return
        if any(isinstance(i, w.model) for i in session.new for w in self._row_watchers):
            session.flush()  # rows not flushed yet are noted too
        added = session.info.pop("added", [])
        if added:
            session.info["described"] = [
                (watcher.callback, [watcher.describe(session, row) for row in rows])
                for watcher in self._row_watchers
                if (rows := [row for row in added if isinstance(row, watcher.model)])
            ]

    def _forget_changes(self, session: Session) -> None:
        for key in ("touched", "added", "described"):
            session.info.pop(key, None)

    def _tell_watchers(self, session: Session) -> None:
        touched = session.info.pop("touched", set())
        for models, callback in self._watchers:
            if any(issubclass(kind, models) for kind in touched):
                callback()
        for row_callback, described in session.info.pop("described", []):
            row_callback(described)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work is committed together, or not at all."""
        try:
            with self._sessions() as session, session.begin():
                yield session
        except DockyardError:
            raise
        except IntegrityError as exc:
            raise Conflict(
                "that change conflicts with another one made at the same time; retry it"
            ) from exc
        except SQLAlchemyError as exc:
            raise StoreError(f"the state store failed: {type(exc).__name__}") from exc

    def dispose(self) -> None:
        self.engine.dispose()
