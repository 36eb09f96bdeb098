"""The formation: how many dynos of each process type an app should run, and of what size.

This is desired state only. The reconciler makes the dynos that run match it, and the
runtime applies each size's limits from :data:`SIZES`.

Each release with a slug brings its process types (:func:`sync`, called by the build in the
same transaction as the release): every type gets one row with the slug's command; a new type
starts at quantity 0, except ``web``, which starts at 1; ``app.json``'s ``formation`` sets the
quantity and size of the new types it names; types the slug no longer has are removed. The
``release`` type is the release phase's command, run once per release, so it is never scaled.

:func:`scale` changes quantities and sizes, all of them or none.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.accounts import parse_uuid
from dockyard.errors import InvalidParams, NotFound
from dockyard.store import App, Formation

RELEASE_TYPE = "release"
WEB_TYPE = "web"
DEFAULT_SIZE = "standard-1x"
_QUANTITY = re.compile(r"^[+-]?\d+$")


@dataclass(frozen=True)
class Size:
    """A dyno size and the limits a dyno of that size runs under."""

    name: str  # as stored and accepted: standard-2x
    label: str  # as Heroku shows it: Standard-2X
    memory_mb: int
    cpu_weight: int  # cgroup v2 cpu.weight; 100 (the kernel's default) is one standard-1x share
    max_processes: int  # processes and threads together (pids.max)
    dedicated: bool  # Heroku's performance dynos have their CPUs to themselves

    @property
    def memory_bytes(self) -> int:
        return self.memory_mb * 1024 * 1024

    @property
    def cpu_shares(self) -> int:
        """The same share for cgroup v1's cpu.shares, whose default is 1024."""
        return self.cpu_weight * 1024 // 100

    @property
    def id(self) -> uuid.UUID:
        """A stable id, for Heroku's ``dyno_size {id, name}``."""
        return uuid.uuid5(uuid.NAMESPACE_URL, f"dockyard:dyno-size:{self.name}")


# Memory as Heroku's sizes; CPU weight as Heroku's "compute" multiples; process counts as
# Heroku's per-dyno process and thread limits.
SIZES: dict[str, Size] = {
    size.name: size
    for size in (
        Size("basic", "Basic", 512, 100, 256, dedicated=False),
        Size("standard-1x", "Standard-1X", 512, 100, 256, dedicated=False),
        Size("standard-2x", "Standard-2X", 1024, 200, 512, dedicated=False),
        Size("performance-m", "Performance-M", 2560, 1200, 16384, dedicated=True),
        Size("performance-l", "Performance-L", 14336, 5000, 32768, dedicated=True),
    )
}
# Heroku's older names for the same sizes.
_ALIASES = {"1x": "standard-1x", "2x": "standard-2x", "px": "performance-l"}


def size_names() -> str:
    return ", ".join(SIZES)


def find_size(name: str) -> Size:
    """The size called ``name``, in any case (``Standard-2X``, ``standard-2x``, ``2X``)."""
    key = name.strip().lower()
    found = SIZES.get(_ALIASES.get(key, key))
    if found is None:
        raise InvalidParams(f"{name!r} is not a dyno size; the sizes are {size_names()}")
    return found


def size_of(row: Formation) -> Size:
    return SIZES.get(row.size) or SIZES[DEFAULT_SIZE]


@dataclass(frozen=True)
class Update:
    """A change to one process type: ``quantity`` absolute (``2``, ``"2"``) or relative
    (``"+1"``, ``"-1"``, as the Heroku CLI sends ``web+1``), and/or ``size``."""

    type: str
    quantity: int | str | None = None
    size: str | None = None


def listing(session: Session, app: App) -> list[Formation]:
    return list(
        session.scalars(
            select(Formation).where(Formation.app_id == app.id).order_by(Formation.type)
        )
    )


def _types_note(app: App, rows: Sequence[Formation]) -> str:
    if not rows:
        return (
            f"{app.name} has no process types yet: deploy code with a Procfile "
            "(`git push dockyard main`) first"
        )
    return f"the process types of {app.name} are {', '.join(r.type for r in rows)}"


def get(session: Session, app: App, identity: str) -> Formation:
    """One process type of ``app``, by type name or formation id."""
    rows = listing(session, app)
    parsed = parse_uuid(identity)
    for row in rows:
        if row.type == identity or (parsed is not None and row.id == parsed):
            return row
    raise NotFound(f"Couldn't find process type {identity!r}: {_types_note(app, rows)}")


def type_of(session: Session, app: App, identity: str) -> str:
    """The type named by ``identity``: a formation id's type, else ``identity`` itself."""
    parsed = parse_uuid(identity)
    if parsed is not None:
        found = session.scalar(
            select(Formation.type).where(Formation.app_id == app.id, Formation.id == parsed)
        )
        if found is not None:
            return found
    return identity


def _check_quantity(kind: str, quantity: int, limit: int) -> int:
    if quantity < 0:
        raise InvalidParams(f"{kind} cannot be scaled below 0 (asked for {quantity})")
    if quantity > limit:
        raise InvalidParams(
            f"{kind} cannot be scaled above {limit} dynos (asked for {quantity}); "
            "the server's limit is DOCKYARD_MAX_QUANTITY"
        )
    return quantity


def _new_quantity(kind: str, current: int, asked: int | str, limit: int) -> int:
    if isinstance(asked, bool) or not isinstance(asked, int | str):
        raise InvalidParams(f"the quantity of {kind} must be a whole number, like 2 (or +1, -1)")
    if isinstance(asked, int):
        return _check_quantity(kind, asked, limit)
    text = asked.strip()
    if not _QUANTITY.match(text):
        raise InvalidParams(
            f"the quantity of {kind} must be a whole number like 2, or +1 or -1 to change "
            f"it by one; {asked!r} is neither"
        )
    if len(text.lstrip("+-")) > 9:
        # Too long to be a count of dynos, and too long for int() to be cheap.
        raise InvalidParams(f"{kind} cannot be scaled to {text[:20]}...; the limit is {limit}")
    if text[0] in "+-":
        return _check_quantity(kind, current + int(text), limit)
    return _check_quantity(kind, int(text), limit)


def node_memory_mb(configured: int | None) -> int:
    """What all dynos together may be given: ``DOCKYARD_NODE_MEMORY_MB``, else the machine's."""
    if configured is not None:
        return configured
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "MemTotal":
            return int(value.split()[0]) // 1024
    raise RuntimeError("/proc/meminfo has no MemTotal")


def _check_capacity(
    session: Session, planned: Sequence[tuple[Formation, int, str]], capacity_mb: int
) -> None:
    """Refuse a formation whose dynos, with every other app's, need more memory than there is."""
    changed = {row.id: (quantity, size) for row, quantity, size in planned}
    total = 0
    for row in session.scalars(select(Formation)):
        quantity, size = changed.get(row.id, (row.quantity, row.size))
        total += quantity * (SIZES.get(size) or SIZES[DEFAULT_SIZE]).memory_mb
    if total > capacity_mb and any(q > 0 for _row, q, _size in planned):
        asked = " ".join(f"{row.type}={q}:{SIZES[s].label}" for row, q, s in planned)
        raise InvalidParams(
            f"{asked} does not fit: with every app's dynos, this server would need {total} MB "
            f"of dyno memory and has {capacity_mb} MB (DOCKYARD_NODE_MEMORY_MB). Scale "
            "something down, use a smaller size, or add memory."
        )


def scale(
    session: Session,
    app: App,
    updates: Sequence[Update],
    *,
    limit: int,
    capacity_mb: int | None = None,
) -> list[Formation]:
    """Apply ``updates``, all or none; return the changed rows in the order given.

    With ``capacity_mb``, a change that makes every app's dynos together need more memory
    than that is refused (scaling down always works). The caller holds the app's row lock,
    as a build's :func:`sync` does.
    """
    rows = {row.type: row for row in listing(session, app)}
    planned: list[tuple[Formation, int, str]] = []
    seen: set[str] = set()
    for update in updates:
        if update.type in seen:
            raise InvalidParams(f"{update.type} is given more than once; give each type once")
        seen.add(update.type)
        row = rows.get(update.type)
        if row is None:
            if update.type == RELEASE_TYPE:
                raise InvalidParams(
                    "release is the release phase command: it runs once for each new release "
                    "and cannot be scaled"
                )
            raise InvalidParams(
                f"{app.name} has no process type {update.type!r}; "
                + _types_note(app, list(rows.values()))
            )
        quantity = row.quantity
        if update.quantity is not None:
            quantity = _new_quantity(update.type, row.quantity, update.quantity, limit)
        size = row.size if update.size is None else find_size(update.size).name
        planned.append((row, quantity, size))
    if capacity_mb is not None:
        _check_capacity(session, planned, capacity_mb)
    for row, quantity, size in planned:
        row.quantity = quantity
        row.size = size
    session.flush()
    return [row for row, _quantity, _size in planned]


def sync(
    session: Session,
    app: App,
    process_types: Mapping[str, str],
    defaults: Mapping[str, Any] | None = None,
    *,
    limit: int,
) -> list[Formation]:
    """Make the formation follow a new slug's ``process_types``; return it.

    ``defaults`` is ``app.json``'s ``formation`` (``{"worker": {"quantity": 2, "size":
    "standard-2x"}}``), applied to types that are new; a bad size or quantity anywhere in it
    raises :class:`InvalidParams`, failing the release. The caller holds the app's row lock.
    """
    chosen = check_defaults(defaults, limit)
    rows = {row.type: row for row in listing(session, app)}
    wanted = {kind: command for kind, command in process_types.items() if kind != RELEASE_TYPE}
    for kind, row in rows.items():
        if kind not in wanted:
            session.delete(row)
    for kind, command in wanted.items():
        existing = rows.get(kind)
        if existing is not None:
            existing.command = command
            continue
        quantity, size = chosen.get(kind) or _defaults(kind, None, limit)
        session.add(
            Formation(app_id=app.id, type=kind, quantity=quantity, size=size, command=command)
        )
    session.flush()
    return listing(session, app)


def check_defaults(defaults: Mapping[str, Any] | None, limit: int) -> dict[str, tuple[int, str]]:
    """``app.json``'s ``formation`` as (quantity, size) per type; raises InvalidParams.

    Every entry is checked, not just those of new types: a mistake in app.json shows at once,
    also when a release phase delays :func:`sync`.
    """
    return {kind: _defaults(kind, spec, limit) for kind, spec in (defaults or {}).items()}


def _defaults(kind: str, spec: object, limit: int) -> tuple[int, str]:
    quantity = 1 if kind == WEB_TYPE else 0
    if not isinstance(spec, Mapping):
        return quantity, DEFAULT_SIZE
    asked = spec.get("quantity", 1)
    if not isinstance(asked, int) or isinstance(asked, bool):
        raise InvalidParams(f"app.json: formation.{kind}.quantity must be a whole number")
    try:
        quantity = _check_quantity(f"app.json: formation.{kind}", asked, limit)
        size = spec.get("size")
        found = find_size(size) if isinstance(size, str) else SIZES[DEFAULT_SIZE]
    except InvalidParams as exc:
        prefix = "" if exc.message.startswith("app.json") else f"app.json: formation.{kind}: "
        raise InvalidParams(prefix + exc.message) from exc
    return quantity, found.name
