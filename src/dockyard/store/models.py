"""The state store's tables, as SQLAlchemy 2 typed models.

Every resource has a UUID ``id``, ``created_at`` and ``updated_at`` (Heroku's shape).
Times are stored and returned as aware UTC datetimes on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Dialect,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    Uuid,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime, also on SQLite, which keeps no time zone."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to the state store")
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UTCDateTime,
        dict[str, str]: JSON,
        dict[str, Any]: JSON,
        list[str]: JSON,
    }


class Resource:
    """Columns every resource has."""

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class User(Resource, Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(254), unique=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)


class Token(Resource, Base):
    """An API token; only its SHA-256 is kept, the token itself is shown once."""

    __tablename__ = "tokens"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    description: Mapped[str] = mapped_column(String(200), default="")
    user: Mapped[User] = relationship()


class SSHKey(Resource, Base):
    __tablename__ = "ssh_keys"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(100), unique=True)
    comment: Mapped[str] = mapped_column(String(200), default="")
    user: Mapped[User] = relationship()


class App(Resource, Base):
    __tablename__ = "apps"

    name: Mapped[str] = mapped_column(String(30), unique=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"), index=True)
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    stack: Mapped[str] = mapped_column(String(50))
    region: Mapped[str] = mapped_column(String(50))
    deploy_branch: Mapped[str | None] = mapped_column(String(255), default=None)
    released_at: Mapped[datetime | None] = mapped_column(default=None)
    uid: Mapped[int | None] = mapped_column(Integer, unique=True, default=None)
    buildpacks: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    formation_defaults: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict, server_default=text("'{}'")
    )
    # TLS: automated certificates (ACME) for its custom domains; HTTP redirected to HTTPS.
    acm: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    https_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The router's timeouts for this app, in seconds; None: the platform's settings.
    router_timeout: Mapped[int | None] = mapped_column(Integer, default=None)
    router_idle_timeout: Mapped[int | None] = mapped_column(Integer, default=None)
    owner: Mapped[User] = relationship()


class Collaborator(Resource, Base):
    __tablename__ = "collaborators"
    __table_args__ = (UniqueConstraint("app_id", "user_id"),)

    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    app: Mapped[App] = relationship()
    user: Mapped[User] = relationship()


class ConfigVar(Base):
    """The app's current config; each release keeps its own snapshot too."""

    __tablename__ = "config_vars"

    app_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("apps.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class Release(Resource, Base):
    __tablename__ = "releases"
    __table_args__ = (UniqueConstraint("app_id", "version"),)

    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    version: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(500))
    config: Mapped[dict[str, str]] = mapped_column(JSON)
    slug_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("slugs.id"), default=None)
    # pending (its release phase has yet to succeed) | succeeded | failed; see release_phase.py
    status: Mapped[str] = mapped_column(String(20), default="succeeded")
    current: Mapped[bool] = mapped_column(Boolean, default=False)
    # Set on the app's first successful deploy when its slug has an app.json postdeploy
    # script: pending | running | succeeded | failed. It runs once per app, ever.
    postdeploy: Mapped[str | None] = mapped_column(String(20), default=None)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    user: Mapped[User | None] = relationship()


class Slug(Resource, Base):
    """A built app: a tarball in the blob store (addressed by its SHA-256) and its process types."""

    __tablename__ = "slugs"

    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    blob: Mapped[str] = mapped_column(String(100))
    checksum: Mapped[str] = mapped_column(String(80))
    size: Mapped[int] = mapped_column(Integer)
    process_types: Mapped[dict[str, str]] = mapped_column(JSON)
    commit: Mapped[str | None] = mapped_column(String(64), default=None)
    commit_description: Mapped[str | None] = mapped_column(String(500), default=None)
    buildpack_provided_description: Mapped[str | None] = mapped_column(String(200), default=None)
    stack: Mapped[str] = mapped_column(String(50))
    # app.json's scripts.postdeploy, as built into this slug.
    postdeploy: Mapped[str | None] = mapped_column(Text, default=None)


class Build(Resource, Base):
    __tablename__ = "builds"

    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[str] = mapped_column(String(20), default="pending")
    source_url: Mapped[str | None] = mapped_column(Text, default=None)
    source_version: Mapped[str | None] = mapped_column(String(200), default=None)
    source_checksum: Mapped[str | None] = mapped_column(String(80), default=None)
    buildpacks: Mapped[list[str]] = mapped_column(JSON, default=list)
    stack: Mapped[str] = mapped_column(String(50))
    slug_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("slugs.id", ondelete="SET NULL"), default=None
    )
    release_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("releases.id", ondelete="SET NULL"), default=None
    )
    failure: Mapped[str | None] = mapped_column(Text, default=None)
    user: Mapped[User | None] = relationship()


class Formation(Resource, Base):
    """How many dynos of one process type an app should run, and their size (desired state)."""

    __tablename__ = "formations"
    __table_args__ = (UniqueConstraint("app_id", "type"),)

    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    type: Mapped[str] = mapped_column(String(63))
    quantity: Mapped[int] = mapped_column(Integer, default=0)
    size: Mapped[str] = mapped_column(String(30))
    command: Mapped[str] = mapped_column(Text)


class Domain(Resource, Base):
    """A custom hostname an app is served at, besides its default ``<app>.<domain>``.

    A hostname belongs to at most one app. ``*.example.com`` is a wildcard domain: the router
    sends it any subdomain of ``example.com`` that no more specific hostname claims.
    """

    __tablename__ = "domains"

    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    hostname: Mapped[str] = mapped_column(String(253), unique=True)
    # Automated certificate management: the domain's state (None while ACM is off) and,
    # when it failed, the CA's reason.
    acm_status: Mapped[str | None] = mapped_column(Text, default=None)
    acm_status_reason: Mapped[str | None] = mapped_column(Text, default=None)
    # After failed orders: how many in a row, and when the next is due (the back-off).
    acm_failures: Mapped[int] = mapped_column(default=0, server_default="0")
    acm_retry_at: Mapped[datetime | None] = mapped_column(default=None)
    # The uploaded certificate (Heroku's SNI endpoint) chosen for this hostname, if any: the
    # router serves it before any other that covers the hostname.
    sni_endpoint_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="SET NULL"), index=True, default=None
    )
    app: Mapped[App] = relationship()
    sni_endpoint: Mapped[Certificate | None] = relationship()


class Addon(Resource, Base):
    """A provisioned backing service (a database, a Redis, a bucket) owned by one app.

    ``provider_data`` is what the provider needs to manage it, credentials included; it is
    kept here only, and reaches apps only as config vars through an :class:`AddonAttachment`.
    """

    __tablename__ = "addons"

    name: Mapped[str] = mapped_column(String(64), unique=True)
    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    service: Mapped[str] = mapped_column(String(50))
    plan: Mapped[str] = mapped_column(String(50))
    state: Mapped[str] = mapped_column(String(20), default="provisioning")
    failure: Mapped[str | None] = mapped_column(Text, default=None)
    provider_data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    app: Mapped[App] = relationship()


class AddonAttachment(Resource, Base):
    """An add-on attached to an app under a name: ``DATABASE`` gives it ``DATABASE_URL``."""

    __tablename__ = "addon_attachments"
    __table_args__ = (UniqueConstraint("app_id", "name"),)

    addon_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("addons.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    addon: Mapped[Addon] = relationship()
    app: Mapped[App] = relationship()


class LogDrain(Resource, Base):
    """Where an app's log stream is also sent: a syslog (TCP or TLS) or HTTPS URL.

    ``token`` (``d.<uuid>``) names the drain in what it receives (the syslog HOSTNAME, the
    ``Logplex-Drain-Token`` header). An app has each URL at most once.
    """

    __tablename__ = "log_drains"
    __table_args__ = (UniqueConstraint("app_id", "url"),)

    app_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("apps.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(2000))
    token: Mapped[str] = mapped_column(String(50), unique=True)
    app: Mapped[App] = relationship()


class Certificate(Resource, Base):
    """A TLS certificate chain and its private key, served by SNI for the hostnames it covers.

    ``app_id`` is None for the platform's default certificate (``*.<DOCKYARD_DOMAIN>``).
    ``source`` is ``uploaded`` (``certs:add``), ``acm`` (issued by ACME) or ``platform`` (the
    local CA's). ``key_pem`` never leaves the platform: no API shape or log line holds it.
    """

    __tablename__ = "certificates"

    app_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("apps.id", ondelete="CASCADE"), index=True, default=None
    )
    name: Mapped[str] = mapped_column(String(64), unique=True)
    chain_pem: Mapped[str] = mapped_column(Text)
    key_pem: Mapped[str] = mapped_column(Text)
    hostnames: Mapped[list[str]] = mapped_column(JSON)  # the leaf's DNS names (SANs)
    subject: Mapped[str] = mapped_column(String(500))
    issuer: Mapped[str] = mapped_column(String(500))
    starts_at: Mapped[datetime] = mapped_column()
    expires_at: Mapped[datetime] = mapped_column()
    source: Mapped[str] = mapped_column(String(20))
    app: Mapped[App | None] = relationship()

    def __repr__(self) -> str:
        return f"<Certificate {self.name} {self.hostnames} {self.source}>"  # never the key
