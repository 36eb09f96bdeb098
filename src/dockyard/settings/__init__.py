"""All of the server's configuration, from ``DOCKYARD_*`` environment variables.

Read and validated once, at start (:func:`load`); every bad value is reported in one
:class:`~dockyard.errors.SettingsError` that names the variable and says what is wrong.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator
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
    tls_cert_file: Path | None = Field(
        default=None,
        description=(
            "HTTPS: a PEM certificate chain for *.<domain> (a wildcard) to serve as the default "
            "certificate instead of the local CA's; with DOCKYARD_TLS_KEY_FILE. Read at start."
        ),
    )
    tls_key_file: Path | None = Field(
        default=None,
        description="HTTPS: the PEM private key of DOCKYARD_TLS_CERT_FILE.",
    )
    runtime: Literal["process", "docker", "swarm"] = Field(
        default="process", description="Dyno runtime driver: process, docker or swarm."
    )
    docker_socket: Path = Field(
        default=Path("/var/run/docker.sock"),
        description="The Docker engine's API socket, for DOCKYARD_RUNTIME=docker and swarm "
        "(see docs/docker.md, docs/swarm.md).",
    )
    registry: str | None = Field(
        default=None,
        description="DOCKYARD_RUNTIME=swarm: the registry (HOST:PORT) the platform pushes "
        "release images to and every node pulls them from (see docs/swarm.md).",
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
    boot_timeout: int = Field(
        default=60,
        description=(
            "Seconds a new web dyno has to accept connections on $PORT before it is stopped "
            "(Error R10) and its release's rollout waits, the old dynos still serving."
        ),
    )
    release_timeout: int = Field(
        default=3600,
        description=(
            "Seconds a release phase command (the Procfile's release:) may run before it is "
            "stopped and its release marked failed; the current release keeps running."
        ),
    )
    router_timeout: int = Field(
        default=30,
        description=(
            "Seconds the router waits for a dyno to start its response, and for each later "
            "part of it, before it answers 503 (Error H12, Request timeout). An app may set "
            "its own: `router:timeouts --timeout`."
        ),
    )
    router_idle_timeout: int = Field(
        default=55,
        description=(
            "Seconds a client connection (keep-alive, or a WebSocket) may stay silent "
            "before the router closes it. An app may set its own for WebSockets: "
            "`router:timeouts --idle`."
        ),
    )
    router_max_body_mb: int = Field(
        default=100,
        description=(
            "Largest request body, in MB, that the router passes to an app; a request that "
            "announces a larger one (its Content-Length) gets a 413 page. Not for the API."
        ),
    )
    router_threads: int | None = Field(
        default=None,
        description=(
            "Threads of the router's HAProxy. Default: half the machine's CPUs (at least "
            "one), leaving the rest to the dynos; one thread serves tens of thousands of "
            "requests a second."
        ),
    )
    node_memory_mb: int | None = Field(
        default=None,
        description=(
            "Memory, in MB, that the dynos of all apps may be given together (the sum of "
            "each dyno's size); a scale beyond it is refused. Default: the machine's memory."
        ),
    )
    log_lines: int = Field(
        default=1500,
        description="Log lines of each app kept in memory (Heroku keeps 1,500): what `logs` "
        "and `logs --tail` give at once.",
    )
    log_history_mb: int = Field(
        default=10,
        description=(
            "Disk, in MB, for each app's log history (rotated; the oldest lines go first): "
            "`logs -n 5000` reads it, also after a restart, and drains resume from it."
        ),
    )
    drain_buffer_lines: int = Field(
        default=10_000,
        description=(
            "Log drains: how many lines a drain may fall behind its app (while it is down or "
            "slow) before the oldest are dropped for it, which the app's logs report as "
            "Error L10. What it missed within that is sent once it is back, also after a "
            "restart of the control plane."
        ),
    )
    drain_private_addresses: bool = Field(
        default=False,
        description="Let log drains send to private, loopback and link-local addresses. Off: "
        "an app's owner cannot make the platform connect to services on its own network.",
    )
    drain_ca_file: Path | None = Field(
        default=None,
        description=(
            "Log drains: a PEM file of CA certificates to trust, besides the system's, for "
            "syslog+tls:// and https:// drains (a private CA). Unset: the system's CAs only."
        ),
    )
    addons_postgres_url: str = Field(
        default="",
        description=(
            "Add-ons: a PostgreSQL superuser URL (postgresql://postgres@127.0.0.1:5432/postgres) "
            "on which postgres add-ons get a database and a role each. Unset: the platform "
            "runs a PostgreSQL of its own under the data dir (Debian's postgresql binaries)."
        ),
    )
    addons_mysql_url: str = Field(
        default="",
        description=(
            "Add-ons: a MySQL or MariaDB admin URL (mysql://root:secret@127.0.0.1:3306) on "
            "which mysql add-ons get a database and a user each. Unset: the platform runs a "
            "MariaDB of its own under the data dir (Debian's mariadb-server binaries)."
        ),
    )
    addons_redis_url: str = Field(
        default="",
        description=(
            "Add-ons: a Redis 6+ admin URL (redis://:secret@127.0.0.1:6379) on which redis "
            "add-ons get an ACL user and a key prefix each. Unset: each redis add-on gets a "
            "redis-server of its own, run by the platform under the data dir."
        ),
    )
    addons_s3_url: str = Field(
        default="",
        description=(
            "Add-ons: the S3 endpoint of a SeaweedFS filer's S3 gateway "
            "(http://127.0.0.1:8333) whose identities the platform may manage. Unset: the "
            "platform runs a SeaweedFS S3 gateway under the data dir (the weed binary)."
        ),
    )

    acme_directory: str = Field(
        default="https://acme-v02.api.letsencrypt.org/directory",
        description=(
            "Automated certificates: the ACME directory URL of the CA that issues them "
            "(Let's Encrypt by default; its staging CA, "
            "https://acme-staging-v02.api.letsencrypt.org/directory, or a private one work too)."
        ),
    )
    acme_email: str = Field(
        default="",
        description=(
            "Automated certificates: the contact address of the platform's ACME account, "
            "where the CA sends expiry and policy notices. Unset: an account with no contact."
        ),
    )
    acme_ca_file: Path | None = Field(
        default=None,
        description=(
            "Automated certificates: a PEM file of the CA certificates to trust for the ACME "
            "directory's HTTPS (a private CA). Unset: the system's trusted CAs."
        ),
    )
    acme_dns_hook: Path | None = Field(
        default=None,
        description=(
            "Automated certificates: an executable that publishes DNS-01 TXT records "
            "(`HOOK set|unset _acme-challenge.<domain> <value>`), so that the ACME CA issues "
            "the wildcard default certificate *.<DOCKYARD_DOMAIN>. Unset: the local CA's "
            "(or DOCKYARD_TLS_CERT_FILE's)."
        ),
    )

    @field_validator(
        "build_timeout",
        "slug_limit_mb",
        "build_disk_limit_mb",
        "max_quantity",
        "node_memory_mb",
        "boot_timeout",
        "release_timeout",
        "router_timeout",
        "router_idle_timeout",
        "router_max_body_mb",
        "router_threads",
        "log_lines",
        "log_history_mb",
        "drain_buffer_lines",
    )
    @classmethod
    def _positive(cls, value: int | None) -> int | None:
        if value is not None and value < 1:
            raise ValueError("must be a whole number of at least 1")
        return value

    @field_validator("acme_directory")
    @classmethod
    def _acme_directory(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError(
                "must be an ACME directory URL, such as "
                "https://acme-v02.api.letsencrypt.org/directory"
            )
        return value

    @field_validator("acme_ca_file")
    @classmethod
    def _acme_ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"must be a PEM file of CA certificates; {value} is not a file")
        return value

    @field_validator("acme_dns_hook")
    @classmethod
    def _acme_dns_hook(cls, value: Path | None) -> Path | None:
        if value is not None and not (value.is_file() and os.access(value, os.X_OK)):
            raise ValueError(f"must be an executable file; {value} is not one")
        return value

    @field_validator("tls_cert_file", "tls_key_file")
    @classmethod
    def _tls_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"must be a PEM file; {value} is not a file")
        return value

    @field_validator("drain_ca_file")
    @classmethod
    def _drain_ca_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"must be a PEM file of CA certificates; {value} is not a file")
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

    @field_validator("addons_postgres_url", "addons_mysql_url", "addons_redis_url", "addons_s3_url")
    @classmethod
    def _addon_url(cls, value: str, info: ValidationInfo) -> str:
        schemes = {
            "addons_postgres_url": ("postgres://", "postgresql://"),
            "addons_mysql_url": ("mysql://",),
            "addons_redis_url": ("redis://",),
            "addons_s3_url": ("http://", "https://"),
        }[str(info.field_name)]
        if value and not value.startswith(schemes):
            raise ValueError(f"must be a URL starting with {' or '.join(schemes)}")
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
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError(
                "DOCKYARD_TLS_CERT_FILE and DOCKYARD_TLS_KEY_FILE go together: set both, or neither"
            )
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
