"""Add-ons and attachments in the state store, and the provider calls that go with them.

Provisioning spans three steps, so that no transaction waits on a provider's server: the
add-on is recorded as ``provisioning`` (its name taken), the provider makes it, and then
one transaction marks it ``provisioned``, attaches it and releases the app's new config. A
provider that fails leaves the add-on ``failed`` with its reason and the app's config as it
was; creating it again under the same name retries.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import secrets
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from dockyard import apps, releases
from dockyard.accounts import parse_uuid
from dockyard.addons import _processes
from dockyard.addons._provider import Catalog, Provider, Provisioning, check_provider_options
from dockyard.build.appjson import AddonSpec
from dockyard.errors import (
    AddonFailed,
    Conflict,
    DockyardError,
    InvalidParams,
    NotFound,
    Unauthorized,
)
from dockyard.store import Addon, AddonAttachment, App, Build, Database, Release, User

log = logging.getLogger("dockyard.addons")

ATTACHMENT_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,49}$")
ADDON_NAME = re.compile(r"^[a-z][a-z0-9-]{1,61}[a-z0-9]$")
OPTION_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
Emit = Callable[[str], Awaitable[None]]
RESTART_TIMEOUT = 25.0  # below the CLI's 30 s wait for an answer
STATES = ("provisioning", "provisioned", "failed", "deprovisioned")
_ADJECTIVES = (
    "amber", "brisk", "clear", "curved", "deep", "dense", "elegant", "fluffy", "graceful",
    "lively", "opaque", "polished", "rigid", "round", "shallow", "silent", "smooth", "solid",
    "spherical", "tapered", "transparent", "triangular", "vertical", "warm",
)  # fmt: skip
_COLORS = (
    "AMBER", "AQUA", "BLACK", "BLUE", "BRONZE", "COBALT", "COPPER", "CRIMSON", "GOLD", "GRAY",
    "GREEN", "IVORY", "JADE", "MAROON", "NAVY", "OLIVE", "ONYX", "ORANGE", "PINK", "PURPLE",
    "RED", "SILVER", "TEAL", "WHITE", "YELLOW",
)  # fmt: skip


def check_attachment_name(name: str) -> str:
    if not ATTACHMENT_NAME.match(name):
        raise InvalidParams(
            f"Attachment name {name!r} is invalid: it becomes the prefix of config vars "
            "(DATABASE gives DATABASE_URL), so it must start with an uppercase letter and "
            "hold only uppercase letters, digits and underscores, at most 50 of them"
        )
    return name


def check_addon_name(name: str) -> str:
    if not ADDON_NAME.match(name):
        raise InvalidParams(
            f"Add-on name {name!r} is invalid: it must start with a letter, hold only "
            "lowercase letters, digits and dashes, not end with a dash, and be 3 to 63 "
            "characters long"
        )
    return name


def check_options(options: Mapping[str, object] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for key, value in (options or {}).items():
        if not OPTION_NAME.match(key):
            raise InvalidParams(f"Add-on option {key!r} is not a valid option name")
        if not isinstance(value, str | int | float | bool):
            raise InvalidParams(f"The value of add-on option {key!r} must be a string")
        checked[key] = str(value).lower() if isinstance(value, bool) else str(value)
    return checked


def config_names(provider: Provider, attachment: str) -> list[str]:
    return [f"{attachment}_{suffix}" for suffix in provider.config_var_suffixes]


def config_for(provider: Provider, addon: Addon, attachment: str) -> dict[str, str]:
    """The config vars an attachment named ``attachment`` gives its app."""
    return {
        f"{attachment}_{suffix}": value
        for suffix, value in provider.config_vars(addon.provider_data).items()
    }


# --- finding ---------------------------------------------------------------------------------


def attachments_of_addon(session: Session, addon: Addon) -> list[AddonAttachment]:
    query = select(AddonAttachment).where(AddonAttachment.addon_id == addon.id)
    return list(session.scalars(query.order_by(AddonAttachment.created_at)))


def attachments_of_app(session: Session, app: App) -> list[AddonAttachment]:
    query = select(AddonAttachment).where(AddonAttachment.app_id == app.id)
    return list(session.scalars(query.order_by(AddonAttachment.name)))


def of_app(session: Session, app: App) -> list[Addon]:
    """The add-ons an app owns or has attached, by name."""
    attached = select(AddonAttachment.addon_id).where(AddonAttachment.app_id == app.id)
    query = select(Addon).where(or_(Addon.app_id == app.id, Addon.id.in_(attached)))
    return list(session.scalars(query.order_by(Addon.name)))


def visible(session: Session, user: User) -> list[Addon]:
    found: dict[uuid.UUID, Addon] = {}
    for app in apps.visible(session, user):
        for addon in of_app(session, app):
            found[addon.id] = addon
    return sorted(found.values(), key=lambda a: a.name)


def may_see(session: Session, user: User, addon: Addon) -> bool:
    if apps.may_access(session, user, addon.app):
        return True
    return any(apps.may_access(session, user, a.app) for a in attachments_of_addon(session, addon))


def find(session: Session, user: User, identity: str, app: App | None = None) -> Addon:
    """The add-on with this name or id that ``user`` may see (owned by or attached to ``app``).

    On an app, an attachment name finds the add-on too: ``DATABASE``.
    """
    parsed = parse_uuid(identity)
    addon = session.scalar(
        select(Addon).where(Addon.id == parsed if parsed else Addon.name == identity)
    )
    if addon is None and app is not None:
        attachment = session.scalar(
            select(AddonAttachment).where(
                AddonAttachment.app_id == app.id, AddonAttachment.name == identity
            )
        )
        addon = attachment.addon if attachment else None
    if addon is not None and app is not None and addon not in of_app(session, app):
        addon = None
    if addon is None or not may_see(session, user, addon):
        where = f" on {app.name}" if app else ""
        raise NotFound(
            f"Couldn't find that add-on{where}: {identity}. `dockyard addons` lists them."
        )
    return addon


def find_attachment(
    session: Session, user: User, identity: str, app: App | None = None
) -> AddonAttachment:
    """An attachment by id, or by its name (``DATABASE``) or its add-on's name on ``app``."""
    parsed = parse_uuid(identity)
    query = select(AddonAttachment)
    if parsed:
        query = query.where(AddonAttachment.id == parsed)
    elif app is not None:
        by_addon = select(Addon.id).where(Addon.name == identity)
        query = query.where(
            AddonAttachment.app_id == app.id,
            or_(AddonAttachment.name == identity, AddonAttachment.addon_id.in_(by_addon)),
        )
    else:
        query = query.where(AddonAttachment.id.is_(None))
    found = list(session.scalars(query))
    if app is not None:
        found = [a for a in found if a.app_id == app.id]
    if len(found) > 1:
        names = ", ".join(a.name for a in found)
        raise InvalidParams(
            f"{identity} is attached to {app.name if app else 'the app'} more than once "
            f"({names}); give the attachment's name"
        )
    if not found or not apps.may_access(session, user, found[0].app):
        where = f" on {app.name}" if app else ""
        raise NotFound(
            f"Couldn't find that add-on attachment{where}: {identity}. "
            "`dockyard addons` lists them."
        )
    return found[0]


def _random_name(session: Session, prefix: str) -> str:
    for _ in range(20):
        name = f"{prefix}-{secrets.choice(_ADJECTIVES)}-{secrets.randbelow(90000) + 10000}"
        if session.scalar(select(Addon.id).where(Addon.name == name)) is None:
            return name
    raise Conflict("could not find a free random add-on name; give one with --name")


def default_attachment_name(session: Session, app: App, provider: Provider) -> str:
    """The service's usual name (DATABASE) when the app has none yet, else SERVICE_COLOR."""
    taken = {a.name for a in attachments_of_app(session, app)}
    current = releases.config(session, app)
    candidates = [provider.default_attachment]
    base = provider.service.upper().replace("-", "_")
    candidates += [f"{base}_{color}" for color in secrets.SystemRandom().sample(_COLORS, 8)]
    for candidate in candidates:
        if candidate not in taken and not set(config_names(provider, candidate)) & set(current):
            return candidate
    raise Conflict(f"could not find a free attachment name on {app.name}; give one with --as")


def _check_free(session: Session, app: App, name: str, provider: Provider) -> None:
    for attachment in attachments_of_app(session, app):
        if attachment.name == name:
            raise InvalidParams(
                f"{name} is already attached to {app.name} (as {attachment.addon.name}); "
                "detach it first or choose another name with --as"
            )
    current = releases.config(session, app)
    clash = [n for n in config_names(provider, name) if n in current]
    if clash:
        raise InvalidParams(
            f"{', '.join(clash)} {'is' if len(clash) == 1 else 'are'} already set on "
            f"{app.name}; unset {'it' if len(clash) == 1 else 'them'} with `dockyard "
            f"config:unset` or choose another attachment name with --as"
        )


def release(
    session: Session,
    app: App,
    changes: Mapping[str, str | None],
    user: User,
    description: str,
    *,
    release_phase: bool = True,
) -> None:
    """Change the app's config (a new release, so the app restarts) under ``description``.

    ``release_phase`` is as for :func:`dockyard.releases.update_config`: False on a server
    that cannot run the release command.
    """
    if not changes:
        return
    before = _newest_version(session, app)
    releases.update_config(session, app, changes, user, release_phase=release_phase)
    newest = session.scalar(
        select(Release).where(Release.app_id == app.id).order_by(Release.version.desc()).limit(1)
    )
    if newest is not None and newest.version > before:
        newest.description = description
        session.flush()


def _newest_version(session: Session, app: App) -> int:
    found = session.scalar(select(func.max(Release.version)).where(Release.app_id == app.id))
    return int(found or 0)


# --- changing --------------------------------------------------------------------------------


class Addons:
    """Add-on operations for the API: each takes the acting user's id and opens its own
    transactions, so that provider calls run between them."""

    def __init__(
        self,
        database: Database,
        catalog: Catalog,
        release_phase: Callable[[], bool] = lambda: True,
        restarted: Callable[[uuid.UUID, int], bool] = lambda _app, _version: True,
        restart_timeout: float = RESTART_TIMEOUT,
    ) -> None:
        """``restarted(app_id, version)`` says whether every dyno of the app runs release
        ``version`` or later: a rotation revokes the old credentials once it does (or after
        ``restart_timeout`` seconds)."""
        self.database = database
        self.catalog = catalog
        self.release_phase = release_phase
        self.restarted = restarted
        self.restart_timeout = restart_timeout

    @contextmanager
    def _transaction(self, user_id: uuid.UUID) -> Iterator[tuple[Session, User]]:
        with self.database.transaction() as session:
            user = session.get(User, user_id)
            if user is None:
                raise Unauthorized("this token's user no longer exists")
            yield session, user

    def create(
        self,
        user_id: uuid.UUID,
        app_identity: str,
        spec: str,
        *,
        name: str | None = None,
        attachment: str | None = None,
        options: Mapping[str, object] | None = None,
    ) -> uuid.UUID:
        """Provision ``spec`` (``postgres`` or ``postgres:standard``) for an app and attach it."""
        provider, plan = self.catalog.plan(spec)
        if attachment is not None:
            check_attachment_name(attachment)
        if name is not None:
            check_addon_name(name)
        checked = check_options(options)
        check_provider_options(provider, checked)
        with self._transaction(user_id) as (session, user):
            app = apps.find(session, user, app_identity, lock=True)
            attach_as = attachment or default_attachment_name(session, app, provider)
            _check_free(session, app, attach_as, provider)
            addon = self._new_addon(session, app, provider, plan.name, name)
            addon_id, addon_name = addon.id, addon.name
        try:
            data = provider.provision(Provisioning(str(addon_id), addon_name, plan, checked))
        except AddonFailed as exc:
            self._failed(addon_id, exc.message)
            raise
        except Exception:
            self._failed(addon_id, "the provider failed unexpectedly; the server log has details")
            raise
        try:
            with self._transaction(user_id) as (session, user):
                app = apps.find(session, user, app_identity, lock=True)
                made = session.get(Addon, addon_id)
                if made is None:
                    raise NotFound(f"{addon_name} was destroyed while it was being provisioned")
                _check_free(session, app, attach_as, provider)
                made.state, made.failure, made.provider_data = "provisioned", None, data
                session.add(
                    AddonAttachment(
                        addon=made, addon_id=made.id, app=app, app_id=app.id, name=attach_as
                    )
                )
                session.flush()
                release(
                    session,
                    app,
                    config_for(provider, made, attach_as),
                    user,
                    f"Attach {attach_as} ({made.name})",
                    release_phase=self.release_phase(),
                )
        except Exception as exc:
            # Nothing half-made is left: what the provider made goes, the add-on is failed.
            self._undo(provider, data)
            message = exc.message if isinstance(exc, DockyardError) else str(exc)
            self._failed(addon_id, message)
            raise
        return addon_id

    @staticmethod
    def _undo(provider: Provider, data: Mapping[str, object]) -> None:
        try:
            provider.deprovision(dict(data))
        except AddonFailed as exc:
            log.error("could not remove a %s add-on after a failure: %s", provider.service, exc)

    def _new_addon(
        self, session: Session, app: App, provider: Provider, plan: str, name: str | None
    ) -> Addon:
        if name is not None:
            existing = session.scalar(select(Addon).where(Addon.name == name))
            if existing is not None:
                if existing.app_id != app.id or existing.state != "failed":
                    raise InvalidParams(f"Name {name} is already taken by another add-on")
                # Retrying a failed add-on under its name.
                existing.service, existing.plan = provider.service, plan
                existing.state, existing.failure = "provisioning", None
                session.flush()
                return existing
        addon = Addon(
            name=name or _random_name(session, provider.name_prefix),
            app=app,
            app_id=app.id,
            service=provider.service,
            plan=plan,
            state="provisioning",
            provider_data={},
        )
        session.add(addon)
        session.flush()
        return addon

    def _failed(self, addon_id: uuid.UUID, message: str) -> None:
        with self.database.transaction() as session:
            addon = session.get(Addon, addon_id)
            if addon is not None:
                addon.state, addon.failure, addon.provider_data = "failed", message, {}

    def attach(
        self,
        user_id: uuid.UUID,
        addon_identity: str,
        app_identity: str,
        name: str | None = None,
    ) -> uuid.UUID:
        """Attach an existing add-on to an app (its own or another the user can access)."""
        if name is not None:
            check_attachment_name(name)
        with self._transaction(user_id) as (session, user):
            app = apps.find(session, user, app_identity, lock=True)
            addon = find(session, user, addon_identity)
            if addon.state != "provisioned":
                raise InvalidParams(
                    f"{addon.name} is {addon.state}; only a provisioned add-on attaches"
                )
            provider = self.catalog.provider(addon.service)
            attach_as = name or default_attachment_name(session, app, provider)
            _check_free(session, app, attach_as, provider)
            attachment = AddonAttachment(
                addon=addon, addon_id=addon.id, app=app, app_id=app.id, name=attach_as
            )
            session.add(attachment)
            session.flush()
            release(
                session,
                app,
                config_for(provider, addon, attach_as),
                user,
                f"Attach {attach_as} ({addon.name})",
                release_phase=self.release_phase(),
            )
            return attachment.id

    def detach(self, user_id: uuid.UUID, identity: str, app_identity: str | None = None) -> None:
        with self._transaction(user_id) as (session, user):
            app = apps.find(session, user, app_identity, lock=True) if app_identity else None
            attachment = find_attachment(session, user, identity, app)
            if app is None:
                apps.find(session, user, str(attachment.app_id), lock=True)
            self._detach(session, user, attachment)

    def _detach(self, session: Session, user: User, attachment: AddonAttachment) -> None:
        addon = attachment.addon
        provider = self.catalog.provider(addon.service)
        names = config_names(provider, attachment.name)
        app = attachment.app
        session.delete(attachment)
        session.flush()
        release(
            session,
            app,
            dict.fromkeys(names),
            user,
            f"Detach {attachment.name} ({addon.name})",
            release_phase=self.release_phase(),
        )

    def destroy(self, user_id: uuid.UUID, identity: str, app_identity: str | None = None) -> Addon:
        """Deprovision an add-on attached to its own app only; returns it as it was."""
        with self._transaction(user_id) as (session, user):
            app = apps.find(session, user, app_identity) if app_identity else None
            addon = find(session, user, identity, app)
            apps.find(session, user, str(addon.app_id))  # the owning app, not just an attached one
            elsewhere = [
                a for a in attachments_of_addon(session, addon) if a.app_id != addon.app_id
            ]
            if elsewhere:
                where = ", ".join(f"{a.app.name} (as {a.name})" for a in elsewhere)
                raise Conflict(
                    f"{addon.name} is still attached to {where}; detach it there first "
                    f"(dockyard addons:detach {elsewhere[0].name} -a {elsewhere[0].app.name})"
                )
            addon_id, service, data = addon.id, addon.service, dict(addon.provider_data)
        if data:
            # First the resource (its connections closed), then the config that pointed at it.
            self.catalog.provider(service).deprovision(data)
        with self._transaction(user_id) as (session, user):
            gone = session.get(Addon, addon_id)
            if gone is None:
                raise NotFound(f"Couldn't find that add-on: {identity}")
            apps.find(session, user, str(gone.app_id), lock=True)
            for attachment in attachments_of_addon(session, gone):
                self._detach(session, user, attachment)
            gone.state = "deprovisioned"
            session.delete(gone)
            session.flush()
            return gone

    def rotate(self, user_id: uuid.UUID, identity: str, app_identity: str | None = None) -> None:
        """New credentials for an add-on, released to every app it is attached to; once
        those apps' dynos have restarted with them, the old ones are revoked and the
        sessions still using them ended."""
        with self._transaction(user_id) as (session, user):
            app = apps.find(session, user, app_identity) if app_identity else None
            addon = find(session, user, identity, app)
            apps.find(session, user, str(addon.app_id))
            if addon.state != "provisioned":
                raise InvalidParams(
                    f"{addon.name} is {addon.state}; only a provisioned add-on rotates"
                )
            addon_id, name, service = addon.id, addon.name, addon.service
            data = dict(addon.provider_data)
        provider = self.catalog.provider(service)
        rotated = provider.rotate(data)
        released: list[tuple[uuid.UUID, int]] = []
        with self._transaction(user_id) as (session, user):
            changed = session.get(Addon, addon_id)
            if changed is None:
                raise NotFound(f"Couldn't find that add-on: {identity}")
            changed.provider_data = rotated
            session.flush()
            for attachment in attachments_of_addon(session, changed):
                app = apps.find(session, user, str(attachment.app_id), lock=True)
                release(
                    session,
                    app,
                    config_for(provider, changed, attachment.name),
                    user,
                    f"Update {attachment.name} by {provider.service}",
                    release_phase=self.release_phase(),
                )
                released.append((app.id, _newest_version(session, app)))
        self._await_restarts(released)
        try:
            revoked = provider.revoke(rotated)
        except AddonFailed as exc:
            raise AddonFailed(
                f"{name} has new credentials and its apps use them, but revoking the old "
                f"ones failed: {exc.message}. `dockyard addons:rotate {name}` again revokes "
                "them."
            ) from exc
        with self.database.transaction() as session:
            changed = session.get(Addon, addon_id)
            if changed is not None:
                changed.provider_data = revoked

    def _await_restarts(self, released: list[tuple[uuid.UUID, int]]) -> None:
        """Until each app's dynos all run its new release, or the restart timeout passes."""
        deadline = time.monotonic() + self.restart_timeout
        for app_id, version in released:
            left = deadline - time.monotonic()
            if left <= 0 or not _processes.wait_for(
                functools.partial(self.restarted, app_id, version), left, 0.2
            ):
                log.warning(
                    "an app's dynos did not all restart within %.0fs of a credential rotation; "
                    "the old credentials are revoked all the same",
                    self.restart_timeout,
                )
                return

    def change_plan(
        self, user_id: uuid.UUID, identity: str, spec: str, app_identity: str | None = None
    ) -> None:
        """Move an add-on to another plan of its service (``standard`` or
        ``postgres:standard``); its credentials and config vars stay as they are."""
        with self._transaction(user_id) as (session, user):
            app = apps.find(session, user, app_identity) if app_identity else None
            addon = find(session, user, identity, app)
            apps.find(session, user, str(addon.app_id))
            if addon.state != "provisioned":
                raise InvalidParams(
                    f"{addon.name} is {addon.state}; only a provisioned add-on changes plan"
                )
            addon_id, name, service, current = addon.id, addon.name, addon.service, addon.plan
            data = dict(addon.provider_data)
        spec = spec.strip()
        provider, plan = self.catalog.plan(spec if ":" in spec else f"{service}:{spec}")
        if provider.service != service:
            raise InvalidParams(
                f"{name} is a {service} add-on; it cannot move to a {provider.service} plan"
            )
        if plan.name == current:
            raise InvalidParams(f"{name} is already on the {service}:{current} plan")
        changed = provider.change_plan(data, plan)
        with self.database.transaction() as session:
            found = session.get(Addon, addon_id)
            if found is None:
                raise NotFound(f"Couldn't find that add-on: {identity}")
            found.plan, found.provider_data = plan.name, changed

    async def provision_declared(
        self, build_id: uuid.UUID, declared: Sequence[str | AddonSpec], emit: Emit
    ) -> None:
        """On an app's first deploy, before its release: the add-ons its ``app.json``
        declares (``["postgres", "redis:standard", {"plan": "redis", "as": "CACHE"}]``), each
        provisioned and attached (under its ``as``) as ``addons:create`` would. A later deploy
        provisions nothing. Those the app already has (from a first deploy that failed later)
        are not made twice; a failed one is retried under its name. A failure fails the
        build, saying which and why."""
        if not declared:
            return
        specs = tuple(AddonSpec(d) if isinstance(d, str) else d for d in declared)
        plan = await asyncio.to_thread(self._declared_plan, build_id, specs)
        if plan is None:
            return
        user_id, app_id, work = plan
        if not work:
            return
        await emit("-----> Provisioning the add-ons app.json declares")
        for spec, plan_spec, retry in work:
            try:
                addon_id = await asyncio.to_thread(
                    functools.partial(
                        self.create,
                        user_id,
                        str(app_id),
                        plan_spec,
                        name=retry,
                        attachment=spec.as_name,
                        options=spec.options,
                    )
                )
            except DockyardError as exc:
                raise AddonFailed(f"app.json: addons: {spec}: {exc.message}") from exc
            await emit(f"       {await asyncio.to_thread(self._created_line, addon_id)}")

    def _declared_plan(
        self, build_id: uuid.UUID, declared: tuple[AddonSpec, ...]
    ) -> tuple[uuid.UUID, uuid.UUID, list[tuple[AddonSpec, str, str | None]]] | None:
        """Who provisions, for which app, and what (each spec, with a failed add-on's name to
        retry); None unless this is the app's first deploy."""
        with self.database.transaction() as session:
            build = session.get(Build, build_id)
            app = session.get(App, build.app_id) if build is not None else None
            if build is None or app is None:
                return None
            deployed = session.scalar(
                select(Release.id).where(Release.app_id == app.id, Release.slug_id.is_not(None))
            )
            if deployed is not None:
                return None
            owned = [a for a in of_app(session, app) if a.app_id == app.id]
            attached = {a.name for a in attachments_of_app(session, app)}
            work: list[tuple[AddonSpec, str, str | None]] = []
            seen: dict[str, int] = {}
            for spec in declared:
                try:
                    provider, plan = self.catalog.plan(spec.plan)
                    check_provider_options(provider, spec.options)
                except DockyardError as exc:
                    raise InvalidParams(f"app.json: addons: {spec}: {exc.message}") from exc
                seen[provider.service] = seen.get(provider.service, 0) + 1
                mine = [a for a in owned if a.service == provider.service]
                made = [a for a in mine if a.state == "provisioned"]
                if spec.as_name in attached or (
                    spec.as_name is None and len(made) >= seen[provider.service]
                ):
                    continue
                failed = [a for a in mine if a.state == "failed"]
                retry = failed[0].name if failed else None
                if failed:
                    owned.remove(failed[0])
                work.append((spec, f"{provider.service}:{plan.name}", retry))
            return build.user_id or app.owner_id, app.id, work

    def _created_line(self, addon_id: uuid.UUID) -> str:
        with self.database.transaction() as session:
            addon = session.get(Addon, addon_id)
            if addon is None:
                return "(destroyed meanwhile)"
            provider = self.catalog.provider(addon.service)
            names = [
                name
                for attachment in attachments_of_addon(session, addon)
                for name in config_names(provider, attachment.name)
            ]
            return f"Created {addon.name} ({addon.service}:{addon.plan}) as {', '.join(names)}"

    def info(self, addon: Addon) -> dict[str, str]:
        if addon.state != "provisioned":
            return {}
        return self.catalog.provider(addon.service).info(addon.provider_data)

    def forget_app(self, session: Session, app: App) -> None:
        """Before ``app`` is destroyed: deprovision the add-ons only it uses, hand the ones it
        owns but others use to one of those apps. Runs in the destroying transaction."""
        for addon in of_app(session, app):
            if addon.app_id != app.id:
                continue  # another app's add-on: its attachment here goes with the app
            others = [a for a in attachments_of_addon(session, addon) if a.app_id != app.id]
            if others:
                addon.app, addon.app_id = others[0].app, others[0].app_id
                continue
            if addon.provider_data:
                self.catalog.provider(addon.service).deprovision(addon.provider_data)
            session.delete(addon)
        session.flush()
