"""What users did, as ``app[api]`` lines in their app's logs (Heroku's wording).

Call these after the change is committed, with the platform's one
:class:`~dockyard.events.Events` (``api.state.events`` in the server); they may be called
from any thread::

    announce.api(events, app_id, app_name, "Deploy 1a2b3c4", by="user@example.com")
    announce.api(events, app_id, app_name, "Release v7 created", by="user@example.com")
    announce.output(events, app_id, app_name, "build", "-----> Python app detected")

:func:`releases` does it for every release, whatever made it (a deploy, a config change, a
rollback, an add-on): ``Set FOO config vars by …`` (the release's description, which names
config vars but never holds their values), then ``Release v7 created by …``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy.orm import Session

from dockyard.events import APP, Events
from dockyard.store import App, Database, Release


def api(
    events: Events, app_id: object, app_name: str, message: str, *, by: str | None = None
) -> None:
    """``app[api]: <message> by <by>``: a deploy, a release, a config change, a scale."""
    events.emit(str(app_id), app_name, "api", f"{message} by {by}" if by else message, source=APP)


def output(events: Events, app_id: object, app_name: str, process: str, text: str) -> None:
    """Output of a platform process the app's code runs in: ``app[build]: -----> …``."""
    events.emit(str(app_id), app_name, process, text, source=APP)


def scaled(formation: Iterable[tuple[str, int, str]]) -> str:
    """``Scaled to web@2:Standard-1X worker@1:Standard-1X`` for (type, quantity, size) rows."""
    return "Scaled to " + " ".join(f"{kind}@{count}:{size}" for kind, count, size in formation)


class _Made(NamedTuple):
    app_id: str
    app_name: str
    version: int
    description: str
    by: str | None


def _describe(session: Session, release: Release) -> _Made:
    app = session.get(App, release.app_id)
    by = release.user.email if release.user is not None else None
    return _Made(
        str(release.app_id), app.name if app else "", release.version, release.description, by
    )


def releases(database: Database, events: Events) -> None:
    """Announce each release once it is committed: what it did, then ``Release vN created``."""

    def made(releases: list[_Made]) -> None:
        for release in releases:
            api(events, release.app_id, release.app_name, release.description, by=release.by)
            api(
                events,
                release.app_id,
                release.app_name,
                f"Release v{release.version} created",
                by=release.by,
            )

    database.on_new_rows(Release, _describe, made)
