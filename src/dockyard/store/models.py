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
    status: Mapped[str] = mapped_column(String(20), default="succeeded")
    current: Mapped[bool] = mapped_column(Boolean, default=False)
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
