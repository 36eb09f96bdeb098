"""Config vars and releases.

A release is immutable: a version number, the config it runs with and (once builds
exist) a slug. Every config change and every rollback makes release v(N+1) in the
same transaction as the change, with the app's row locked, so two concurrent
changes can neither lose an update nor share a version.

A release whose slug declares a ``release`` process type is made ``pending``: it deploys
(becomes ``current``) only once its release phase succeeds, and a release made while another
is pending waits behind it, so releases deploy in version order
(:mod:`dockyard.release_phase` runs them). :func:`promote` and :func:`fail` end a pending
release. A failed release changes nothing: the current release keeps running, and the app's
config goes back to the current release's when no newer release followed.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from dockyard import formation
from dockyard.accounts import parse_uuid
from dockyard.errors import InvalidParams, NotFound
from dockyard.formation import RELEASE_TYPE
from dockyard.store import App, ConfigVar, Release, Slug, User, utcnow

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
    session: Session,
    app: App,
    changes: Mapping[str, object],
    user: User,
    *,
    release_phase: bool = True,
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
        slug_id=latest_slug(session, app),
        release_phase=release_phase,
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
    release_phase: bool = True,
) -> Release:
    """Make release v(N+1); current at once, or ``pending`` (see the module's docstring).

    ``release_phase=False`` (a server that cannot run dynos) makes it current at once, its
    release command skipped. The caller holds the app's row lock.
    """
    version = (
        session.scalar(select(func.max(Release.version)).where(Release.app_id == app.id)) or 0
    ) + 1
    slug = session.get(Slug, slug_id) if slug_id is not None else None
    waits = release_phase and (
        (slug is not None and RELEASE_TYPE in slug.process_types)
        or pending(session, app) is not None
    )
    release = Release(
        app_id=app.id,
        version=version,
        description=description,
        config=dict(values),
        slug_id=slug_id,
        status="pending" if waits else "succeeded",
        current=False,
        user=user,
        user_id=user.id if user else None,
    )
    session.add(release)
    session.flush()
    if not waits:
        promote(session, app, release)
    return release


def pending(session: Session, app: App) -> Release | None:
    """The app's oldest pending release: the next one whose release phase runs."""
    return session.scalar(
        select(Release)
        .where(Release.app_id == app.id, Release.status == "pending")
        .order_by(Release.version)
        .limit(1)
    )


def promote(session: Session, app: App, release: Release) -> None:
    """Deploy ``release``: it succeeded and is now the current one.

    On the app's first successful deploy, an app.json ``postdeploy`` script in its slug is
    marked to run (once, ever). The caller holds the app's row lock; the formation follows
    the release's slug where the caller says so (a build, the release phase).
    """
    session.execute(
        update(Release)
        .where(Release.app_id == app.id, Release.current.is_(True), Release.id != release.id)
        .values(current=False)
    )
    release.status = "succeeded"
    release.current = True
    app.released_at = utcnow()
    if release.slug_id is not None:
        slug = session.get(Slug, release.slug_id)
        deployed_before = session.scalar(
            select(func.count())
            .select_from(Release)
            .where(
                Release.app_id == app.id,
                Release.id != release.id,
                Release.status == "succeeded",
                Release.slug_id.is_not(None),
            )
        )
        if slug is not None and slug.postdeploy and not deployed_before:
            release.postdeploy = "pending"
    session.flush()


def fail(session: Session, app: App, release: Release) -> None:
    """``release`` is not deployed; the current release keeps running.

    Unless a newer release follows it, the app's config goes back to the current release's:
    a failed config change is undone. The caller holds the app's row lock.
    """
    release.status = "failed"
    release.current = False
    newer = session.scalar(
        select(func.count())
        .select_from(Release)
        .where(Release.app_id == app.id, Release.version > release.version)
    )
    if not newer:
        current = session.scalar(
            select(Release).where(Release.app_id == app.id, Release.current.is_(True))
        )
        _store_config(session, app, dict(current.config) if current is not None else {})
    session.flush()


def current_slug(session: Session, app: App) -> uuid.UUID | None:
    release = session.scalar(
        select(Release).where(Release.app_id == app.id, Release.current.is_(True))
    )
    return release.slug_id if release else None


def latest_slug(session: Session, app: App) -> uuid.UUID | None:
    """The slug of the newest release that did not fail: what a config change releases.

    While a deploy waits for its release phase, a config change carries the new code too,
    rather than the code that runs now, which would undo the deploy once both succeed.
    """
    release = session.scalar(
        select(Release)
        .where(Release.app_id == app.id, Release.status != "failed")
        .order_by(Release.version.desc())
        .limit(1)
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


def rollback(
    session: Session,
    app: App,
    identity: str,
    user: User,
    *,
    limit: int,
    release_phase: bool = True,
) -> Release:
    """Make a new release with the slug and config of release ``identity``.

    Its slug's process types become the formation's commands again, as on Heroku (now, or,
    with a release command, once the release phase deploys it). ``limit`` is the most dynos
    of a type. The caller holds the app's row lock.
    """
    target = get(session, app, identity)
    _store_config(session, app, target.config)
    made = create(
        session,
        app,
        f"Rollback to v{target.version}",
        target.config,
        user=user,
        slug_id=target.slug_id,
        release_phase=release_phase,
    )
    slug = session.get(Slug, target.slug_id) if target.slug_id is not None else None
    if made.current and slug is not None:
        formation.sync(session, app, slug.process_types, app.formation_defaults, limit=limit)
    return made
