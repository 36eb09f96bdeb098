"""Running dynos: the narrow interface every runtime driver implements.

A driver starts a dyno from a :class:`DynoSpec`, stops it with a grace period, lists what
runs, reports each exit and tells what a dyno uses. A one-off dyno started with ``attach``
(``dockyard run``) takes its input from, and gives its output to, one :class:`Attachment`
(:meth:`Runtime.attach`) instead of the log; it ends when the attachment closes. The
``process`` driver (:mod:`dockyard.runtime.process`) runs dynos as sandboxed processes on
this node, the ``docker`` driver (:mod:`dockyard.runtime.docker`) as containers of the Docker
engine on this node, the ``swarm`` driver (:mod:`dockyard.runtime.swarm`) as services of a
Docker Swarm, on its nodes. Nothing
outside this package may assume dynos are processes.

Errors::

    DockyardError
    └── DynoError              a dyno could not be started or managed
        ├── SlugError          a slug is missing, corrupt or unsafe to unpack
        ├── DynoNotFound       no dyno with that id runs here
        └── EngineError        the Docker engine refused or failed (docker_engine)
            └── EngineNotFound no such image or container
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from dockyard.errors import DockyardError

__all__ = [
    "Attachment",
    "Dyno",
    "DynoError",
    "DynoNotFound",
    "DynoOutput",
    "DynoSpec",
    "Exit",
    "Output",
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
    # One-off dynos run by ``dockyard run`` without --detached: their stdin and output go
    # through :meth:`Runtime.attach` instead of the log, on a pseudo-terminal when ``tty``,
    # and the dyno ends when the attachment closes.
    attach: bool = False
    tty: bool = False

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
    # Where a web dyno's port is: this machine, or the node a cluster runs it on.
    host: str = "127.0.0.1"


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
    # Why it ended when the platform knows better than the status: "memory" when the kernel
    # killed it for going over its size's memory limit (Heroku's R15); "node" when the
    # cluster stopped it because its node drains or went down (not a crash).
    reason: str | None = None


@dataclass(frozen=True)
class DynoOutput:
    """A dyno's output log still kept on the node, the dyno running or ended (the log hub's)."""

    dyno_id: str
    app_id: str
    app_name: str
    name: str  # web.1
    path: Path  # as Dyno.log_path: timestamped output lines, one JSON object per line


@dataclass(frozen=True)
class Usage:
    """What a running dyno's processes use now."""

    memory_bytes: int  # resident memory
    cpu_seconds: float  # CPU time of the processes alive now
    processes: int


@dataclass(frozen=True)
class Output:
    """Bytes an attached dyno wrote: to ``stdout`` (all of it, on a terminal) or ``stderr``."""

    stream: str
    data: bytes


class Attachment(Protocol):
    """The input and output of one attached dyno, until it ends or this closes.

    Closing it before the dyno ended hangs the dyno up: its terminal (or stdin) closes, and
    the dyno is stopped. A dyno has one attachment at most.
    """

    @property
    def status(self) -> int | None:
        """The dyno's exit status once :meth:`read` returned None; None if it is unknown."""
        ...

    async def read(self) -> Output | None:
        """The dyno's next output; None once it ended and all of its output was read."""
        ...

    async def write(self, data: bytes) -> None:
        """Send ``data`` to the dyno's stdin (its terminal, with a TTY)."""
        ...

    async def close_input(self) -> None:
        """End the dyno's stdin (end of file); without a TTY only, where it is a pipe."""
        ...

    async def resize(self, rows: int, columns: int) -> None:
        """Set the size of the dyno's terminal; its processes get SIGWINCH."""
        ...

    async def close(self) -> None:
        """Detach; a dyno still running is hung up and stopped."""
        ...


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

    async def attach(self, dyno_id: str) -> Attachment:
        """The input and output of a dyno started with ``attach``; once per dyno.

        Raises :class:`DynoNotFound` when no such dyno runs, and :class:`DynoError` when it
        was not started attached or has been attached to already.
        """
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

    async def outputs(self) -> Sequence[DynoOutput]:
        """Every dyno output log on the node: running dynos' and ended ones' not tidied yet."""
        ...
