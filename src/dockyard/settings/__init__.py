"""All of the server's configuration, from ``DOCKYARD_*`` environment variables.

Read and validated once, at start (:func:`load`); every bad value is reported in one
:class:`~dockyard.errors.SettingsError` that names the variable and says what is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dockyard.errors import SettingsError

_HOSTNAME = re.compile(
    r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)


def _is_root() -> bool:
    return os.geteuid() == 0


def default_data_dir() -> Path:
    if _is_root():
        return Path("/var/lib/dockyard")
    return Path.home() / ".local" / "share" / "dockyard"


class Settings(BaseSettings):
    """The server's settings; each field is the variable ``DOCKYARD_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="DOCKYARD_", extra="ignore", frozen=True)

    data_dir: Path = Field(
        default_factory=default_data_dir,
        description="All local state. "
        "Default /var/lib/dockyard as root, else ~/.local/share/dockyard.",
    )
    database_url: str = Field(
        default="",
        description="State store: sqlite:///PATH or postgresql://USER@HOST:PORT/DB. "
        "Default: dockyard.db, an SQLite file in the data dir.",
    )
    blob_url: str = Field(
        default="",
        description="Blob store for slugs, caches and sources: a directory path or file:// URL "
        "(S3-compatible s3:// URLs in a later release). Default: blobs/ in the data dir.",
    )
    domain: str = Field(
        default="localhost",
        description="Apps are served at <app>.<domain>; the API also at api.<domain>.",
    )
    http_port: int = Field(
        default=0, description="Router HTTP port. Default 80 as root, else 8080."
    )
    https_port: int = Field(
        default=0, description="Router HTTPS port. Default 443 as root, else 8443."
    )
    api_listen: str = Field(
        default="127.0.0.1:5100", description="The API's own listener, HOST:PORT."
    )
    ssh_port: int = Field(default=2222, description="Port of the git-over-SSH receiver.")
    runtime: Literal["process", "docker", "swarm"] = Field(
        default="process", description="Dyno runtime driver: process, docker or swarm."
    )

    build_timeout: int = Field(
        default=900,
        description="Seconds a build may run before it is stopped and the push rejected.",
    )
    slug_limit_mb: int = Field(default=500, description="Largest compressed slug, in MB.")
    build_disk_limit_mb: int = Field(
        default=4096,
        description="Disk a build may fill in /app and /cache, in MB, before it is stopped.",
    )
    max_quantity: int = Field(
        default=100,
        description="Most dynos of one process type an app may be scaled to.",
    )

    @field_validator("build_timeout", "slug_limit_mb", "build_disk_limit_mb", "max_quantity")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be a whole number of at least 1")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        value = value.expanduser()
        if not value.is_absolute():
            raise ValueError("must be an absolute path, such as /var/lib/dockyard")
        return value

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str) -> str:
        if value and not value.startswith(("sqlite://", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(
                "must start with sqlite:/// or postgresql://, "
                "such as postgresql://dockyard@127.0.0.1:5432/dockyard"
            )
        return value

    @field_validator("blob_url")
    @classmethod
    def _known_blob_store(cls, value: str) -> str:
        if value and not (value.startswith(("file://", "/"))):
            raise ValueError("must be an absolute directory path or a file:// URL")
        return value

    @field_validator("domain")
    @classmethod
    def _hostname(cls, value: str) -> str:
        value = value.lower().rstrip(".")
        if not _HOSTNAME.match(value):
            raise ValueError("must be a DNS name such as example.com or localhost")
        return value

    @field_validator("http_port", "https_port")
    @classmethod
    def _router_port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be a TCP port, 1 to 65535")
        return value

    @field_validator("ssh_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 1 <= value <= 65535:
            raise ValueError("must be a TCP port, 1 to 65535")
        return value

    @field_validator("api_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError("must be HOST:PORT, such as 127.0.0.1:5100")
        return value

    @model_validator(mode="after")
    def _root_defaults(self) -> Settings:
        root = _is_root()
        if not self.http_port:
            object.__setattr__(self, "http_port", 80 if root else 8080)
        if not self.https_port:
            object.__setattr__(self, "https_port", 443 if root else 8443)
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'dockyard.db'}")
        if not self.blob_url:
            object.__setattr__(self, "blob_url", f"file://{self.data_dir / 'blobs'}")
        return self

    @property
    def api_host(self) -> str:
        return self.api_listen.rpartition(":")[0].strip("[]")

    @property
    def api_port(self) -> int:
        return int(self.api_listen.rpartition(":")[2])


def load() -> Settings:
    """Read the environment once; raise :class:`SettingsError` naming every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = str(error["loc"][0]) if error["loc"] else ""
            name = f"DOCKYARD_{field.upper()}" if field else "DOCKYARD_*"
            value = os.environ.get(name, "")
            message = str(error["msg"]).removeprefix("Value error, ")
            problems.append(f"{name}={value!r}: {message}")
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems)) from exc


__all__ = ["Settings", "default_data_dir", "load"]
