"""Config vars and releases.

A release is immutable: a version number, the config it runs with and (once builds
exist) a slug. Every config change and every rollback makes release v(N+1) in the
same transaction as the change, with the app's row locked, so two concurrent
changes can neither lose an update nor share a version.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from dockyard.accounts import parse_uuid
from dockyard.errors import InvalidParams, NotFound
from dockyard.store import App, ConfigVar, Release, User, utcnow

CONFIG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
CONFIG_LIMIT = 32 * 1024
RESERVED = frozenset({"PORT", "DYNO"})


def config(session: Session, app: App) -> dict[str, str]:
    rows = session.scalars(
        select(ConfigVar).where(ConfigVar.app_id == app.id).order_by(ConfigVar.key)
    )
    return {row.key: row.value for row in rows}


def check_changes(changes: Mapping[str, object]) -> dict[str, str | None]:
    checked: dict[str, str | None] = {}
    for name, value in changes.items():
        if not CONFIG_NAME.match(name) or len(name) > 255:
            raise InvalidParams(
                f"Config var name {name!r} is invalid: use letters, digits and underscores, "
                "not starting with a digit (like DATABASE_URL)"
            )
        if name in RESERVED:
            raise InvalidParams(f"{name} is set by the platform for each dyno and cannot be set")
        if value is not None and not isinstance(value, str):
            raise InvalidParams(f"The value of {name} must be a string (or null to unset it)")
        if value is not None and "\x00" in value:
            raise InvalidParams(
                f"The value of {name} holds a NUL byte, which no process can receive"
            )
        checked[name] = value
    return checked


def config_size(values: Mapping[str, str]) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in values.items())


def apply(session: Session, app: App, changes: Mapping[str, object]) -> dict[str, str]:
    """Check and store ``changes`` (a ``None`` value unsets) without releasing them.

    Returns the new config. The caller holds the app's row lock and makes the release.
    """
    checked = check_changes(changes)
    current = config(session, app)
    new = dict(current)
    for name, value in checked.items():
        if value is None:
            new.pop(name, None)
        else:
            new[name] = value
    if new == current:
        return current
    if (size := config_size(new)) > CONFIG_LIMIT:
        raise InvalidParams(
            f"Config vars would take {size} bytes; names and values together may take at most "
            f"{CONFIG_LIMIT} bytes (32 kB). Keep large data in files or add-ons."
        )
    _store_config(session, app, new)
    return new


def update_config(
    session: Session, app: App, changes: Mapping[str, object], user: User
) -> dict[str, str]:
    """Apply ``changes`` (a ``None`` value unsets) and release them; return the new config.

    The caller holds the app's row lock (``apps.find(..., lock=True)``).
    """
    current = config(session, app)
    new = apply(session, app, changes)
    if new == current:
        return current
    set_names = [n for n, v in changes.items() if v is not None and current.get(n) != v]
    removed = [n for n, v in changes.items() if v is None and n in current]
    parts = []
    if set_names:
        parts.append(f"Set {', '.join(set_names)}")
    if removed:
        parts.append(f"{'remove' if parts else 'Remove'} {', '.join(removed)}")
    create(
        session,
        app,
        f"{'; '.join(parts)} config vars",
        new,
        user=user,
        slug_id=current_slug(session, app),
    )
    return new


def _store_config(session: Session, app: App, values: Mapping[str, str]) -> None:
    session.execute(delete(ConfigVar).where(ConfigVar.app_id == app.id))
    session.add_all(ConfigVar(app_id=app.id, key=k, value=v) for k, v in values.items())
    session.flush()


def create(
    session: Session,
    app: App,
    description: str,
    values: Mapping[str, str],
    *,
    user: User | None,
    slug_id: uuid.UUID | None = None,
) -> Release:
    version = (
        session.scalar(select(func.max(Release.version)).where(Release.app_id == app.id)) or 0
    ) + 1
    session.execute(
        update(Release)
        .where(Release.app_id == app.id, Release.current.is_(True))
        .values(current=False)
    )
    release = Release(
        app_id=app.id,
        version=version,
        description=description,
        config=dict(values),
        slug_id=slug_id,
        status="succeeded",
        current=True,
        user=user,
        user_id=user.id if user else None,
    )
    session.add(release)
    app.released_at = utcnow()
    session.flush()
    return release


def current_slug(session: Session, app: App) -> uuid.UUID | None:
    release = session.scalar(
        select(Release).where(Release.app_id == app.id, Release.current.is_(True))
    )
    return release.slug_id if release else None


def history(session: Session, app: App) -> list[Release]:
    return list(
        session.scalars(select(Release).where(Release.app_id == app.id).order_by(Release.version))
    )


def get(session: Session, app: App, identity: str) -> Release:
    """A release by id, version number or ``vN``."""
    query = select(Release).where(Release.app_id == app.id)
    digits = identity.removeprefix("v")
    if digits.isdigit():
        release = session.scalar(query.where(Release.version == int(digits)))
    elif (parsed := parse_uuid(identity)) is not None:
        release = session.scalar(query.where(Release.id == parsed))
    else:
        release = None
    if release is None:
        raise NotFound(
            f"Couldn't find release {identity} of {app.name}; `dockyard releases` lists them"
        )
    return release


def rollback(session: Session, app: App, identity: str, user: User) -> Release:
    """Make a new release with the slug and config of release ``identity``.

    The caller holds the app's row lock.
    """
    target = get(session, app, identity)
    _store_config(session, app, target.config)
    return create(
        session,
        app,
        f"Rollback to v{target.version}",
        target.config,
        user=user,
        slug_id=target.slug_id,
    )
