"""Running dynos: the narrow interface every runtime driver implements.

A driver starts a dyno from a :class:`DynoSpec`, stops it with a grace period, lists what
runs, reports each exit and tells what a dyno uses. The ``process`` driver
(:mod:`dockyard.runtime.process`) runs dynos as sandboxed processes on this node;
``docker`` and ``swarm`` drivers implement the same :class:`Runtime`. Nothing outside
this package may assume dynos are processes.

Errors::

    DockyardError
    └── DynoError              a dyno could not be started or managed
        ├── SlugError          a slug is missing, corrupt or unsafe to unpack
        └── DynoNotFound       no dyno with that id runs here
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dockyard.errors import DockyardError

__all__ = [
    "Dyno",
    "DynoError",
    "DynoNotFound",
    "DynoSpec",
    "Exit",
    "Runtime",
    "SlugError",
    "Stopped",
    "Usage",
]


class DynoError(DockyardError):
    """A dyno could not be started or managed (not: the dyno's command failed)."""


class SlugError(DynoError):
    """A slug is missing, does not match its checksum, or holds unsafe entries."""


class DynoNotFound(DynoError):
    status = 404
    id = "not_found"


@dataclass(frozen=True)
class DynoSpec:
    """Everything a driver needs to start one dyno of a release."""

    app_id: str
    app_name: str
    app_uid: int
    release_version: int
    slug_path: Path
    slug_sha256: str
    process_type: str
    name: str  # web.1, worker.2, run.4821
    command: str
    env: Mapping[str, str] = field(default_factory=dict)  # config vars
    size: str = "standard-1x"
    # Web dynos get PORT; None lets the driver pick a free one.
    port: int | None = None

    @property
    def web(self) -> bool:
        return self.process_type == "web"


@dataclass(frozen=True)
class Dyno:
    """A started dyno. ``id`` is unique; ``name`` repeats while a release replaces another."""

    id: str
    name: str
    app_id: str
    app_name: str
    release_version: int
    process_type: str
    size: str
    command: str
    port: int | None
    pid: int  # the driver's handle on the host (a process, later a container's)
    started_at: float  # seconds since the epoch
    log_path: Path  # timestamped output lines, one JSON object per line


@dataclass(frozen=True)
class Stopped:
    """How :meth:`Runtime.stop` ended a dyno."""

    status: int | None  # the exit status (143 after SIGTERM, 137 after SIGKILL)
    # The dyno outlived its grace period and was killed (Heroku's R12).
    grace_exceeded: bool


@dataclass(frozen=True)
class Exit:
    """A dyno ended. ``stopped`` is set when the platform stopped it, else it is a crash."""

    dyno: Dyno
    status: int | None  # None when its exit went unrecorded (the node rebooted)
    at: float
    stopped: Stopped | None = None


@dataclass(frozen=True)
class Usage:
    """What a running dyno's processes use now."""

    memory_bytes: int  # resident memory
    cpu_seconds: float  # CPU time of the processes alive now
    processes: int


class Runtime(Protocol):
    """Runs dynos on one node (``process``) or a cluster (later drivers)."""

    async def start(self, spec: DynoSpec) -> Dyno:
        """Start a dyno; returns once its command runs (not: once it serves)."""
        ...

    async def stop(self, dyno_id: str, grace: float = 30.0) -> Stopped:
        """SIGTERM every process of the dyno; SIGKILL them after ``grace`` seconds."""
        ...

    async def usage(self, dyno_id: str) -> Usage:
        """The dyno's memory, CPU time and process count."""
        ...

    async def list(self) -> list[Dyno]:
        """The dynos that run now, including ones started before a restart."""
        ...

    def exits(self) -> AsyncIterator[Exit]:
        """Each dyno's end; exits missed while the control plane was down come first.

        An exit counts as handled when the consumer asks for the next one; one that was
        not is reported again by the next runtime on this node (at least once). One
        consumer per runtime (the reconciler).
        """
        ...

    async def close(self) -> None:
        """Stop watching; the dynos keep running and a new instance adopts them."""
        ...
