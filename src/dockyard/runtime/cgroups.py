"""Resource limits for dynos: a Linux control group (cgroup) per dyno, v1 or v2.

Each dyno gets a cgroup of its own, ``dockyard/<dyno id>`` under the platform's own cgroup
(as ``/proc/self/cgroup`` names it), with its size's limits: memory (swap included, so that
a dyno cannot escape into swap), CPU share and process count. The control plane makes it
(:meth:`Layout.create`); the dyno's supervisor moves the sandbox into it between fork and
exec (:meth:`Group.join`), so no process of the app ever runs outside it; once the dyno has
ended, the supervisor reads whether the kernel killed it for memory (:meth:`Group.oom_kills`)
and removes the cgroup (:meth:`Group.remove`).

- **v1** (a hierarchy per controller: ``/sys/fs/cgroup/memory``, ``cpu``, ``pids``): a
  directory per controller; ``memory.limit_in_bytes``, and ``memory.memsw.limit_in_bytes``
  at the same value when swap is accounted; ``cpu.shares``; ``pids.max``. OOM kills count
  in ``memory.oom_control`` (``oom_kill``).
- **v2** (one unified hierarchy at ``/sys/fs/cgroup``): one directory; ``memory.max``,
  ``memory.swap.max`` 0, ``memory.oom.group`` 1 (an OOM kill takes the whole dyno down);
  ``cpu.weight``; ``pids.max``. OOM kills count in ``memory.events`` (``oom_kill``). The
  controllers must be enabled in the ``cgroup.subtree_control`` of the platform's cgroup and
  of ``dockyard``, which a cgroup that holds processes cannot do (the "no internal processes"
  rule): when the platform is alone in its cgroup (a systemd unit with ``Delegate=yes``) it
  first moves itself into a leaf, ``dockyard-platform``; otherwise limits are off.

Without root, or when this host has no usable memory controller, dynos run without limits
and one warning line says so, once (:func:`platform_layout`).
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import os
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

log = logging.getLogger("dockyard.runtime")

CONTROLLERS = ("memory", "cpu", "pids")
PARENT = "dockyard"  # the dynos' cgroups are PARENT/<dyno id> under the platform's
PLATFORM_LEAF = "dockyard-platform"  # v2: where the platform moves itself, if it must
_CREATE_ATTEMPTS = 3


class Unavailable(Exception):
    """Why dynos cannot have cgroups on this host."""


@dataclass(frozen=True)
class Limits:
    """What a dyno of one size may use."""

    memory_bytes: int
    cpu_weight: int  # v2's cpu.weight (default 100)
    cpu_shares: int  # v1's cpu.shares (default 1024)
    max_processes: int  # processes and threads together


@dataclass(frozen=True)
class Setting:
    """One value to write to a control file; optional ones are written where the file exists."""

    controller: str
    file: str
    value: str
    required: bool = True


def settings(version: int, limits: Limits) -> list[Setting]:
    """The control files of a dyno's cgroup and their values, in the order they are written."""
    memory = str(limits.memory_bytes)
    if version == 1:
        return [
            Setting("memory", "memory.limit_in_bytes", memory),
            # Memory plus swap; after the memory limit, which it may not be below.
            Setting("memory", "memory.memsw.limit_in_bytes", memory, required=False),
            Setting("cpu", "cpu.shares", str(limits.cpu_shares)),
            Setting("pids", "pids.max", str(limits.max_processes)),
        ]
    return [
        Setting("memory", "memory.max", memory),
        Setting("memory", "memory.swap.max", "0", required=False),
        Setting("memory", "memory.oom.group", "1", required=False),
        Setting("cpu", "cpu.weight", str(limits.cpu_weight)),
        Setting("pids", "pids.max", str(limits.max_processes)),
    ]


@dataclass(frozen=True)
class Group:
    """A dyno's cgroup: its directory in each controller's hierarchy (one directory on v2)."""

    version: int
    paths: Mapping[str, Path]  # controller → directory

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "paths": {k: str(v) for k, v in self.paths.items()}}

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> Group:
        paths = {str(k): Path(v) for k, v in value["paths"].items()}
        return cls(int(value["version"]), paths)

    @property
    def directories(self) -> list[Path]:
        """Each directory once (v2, and v1 controllers mounted together, share one)."""
        return list(dict.fromkeys(self.paths.values()))

    def join(self, pid: int = 0) -> None:
        """Move process ``pid`` (0: this one) into the group; fit for a ``preexec_fn``."""
        data = str(pid or os.getpid()).encode()
        for directory in self.directories:
            fd = os.open(directory / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, data)
            finally:
                os.close(fd)

    def oom_kills(self) -> int:
        """How many of the group's processes the kernel killed for going over its memory."""
        memory = self.paths.get("memory")
        if memory is None:
            return 0
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        return _keyed(memory / name).get("oom_kill", 0)

    def memory_bytes(self) -> int | None:
        """Memory in use, without the page cache that could be dropped; None when unknown."""
        memory = self.paths.get("memory")
        if memory is None:
            return None
        try:
            if self.version == 1:
                used = int((memory / "memory.usage_in_bytes").read_text())
                inactive = _keyed(memory / "memory.stat").get("total_inactive_file", 0)
            else:
                used = int((memory / "memory.current").read_text())
                inactive = _keyed(memory / "memory.stat").get("inactive_file", 0)
        except (OSError, ValueError):
            return None
        return max(0, used - inactive)

    def remove(self, timeout: float = 5.0) -> None:
        """Kill what is left in the group, remove it, and ``dockyard`` too when it is empty.

        Raises :class:`OSError` when a directory is still busy after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        for directory in self.directories:
            while True:
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError as exc:
                    if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                        raise
                # Processes the end of the dyno's PID namespace has not reaped yet.
                for pid in _pids(directory):
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                time.sleep(0.01)
            # Busy while other dynos run; gone, or made again, when one starts meanwhile.
            if directory.parent.name == PARENT:
                with contextlib.suppress(OSError):
                    directory.parent.rmdir()


@dataclass(frozen=True)
class Layout:
    """Where dynos' cgroups go on this host: the platform's own cgroup per controller."""

    version: int
    parents: Mapping[str, Path]  # controller → the platform's cgroup directory

    def create(self, name: str, limits: Limits) -> Group:
        """Make ``dockyard/<name>`` with ``limits``; raises :class:`OSError` when it cannot."""
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                return self._create(name, limits)
            except FileNotFoundError:
                # The last dyno's supervisor removed the empty ``dockyard`` just then.
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def _create(self, name: str, limits: Limits) -> Group:
        paths: dict[str, Path] = {}
        group = Group(self.version, paths)
        try:
            for controller, parent in self.parents.items():
                base = parent / PARENT
                base.mkdir(exist_ok=True)
                if self.version == 2:
                    _enable(base, [c for c in CONTROLLERS if c in self.parents])
                path = base / name
                path.mkdir(exist_ok=True)
                paths[controller] = path
            for setting in settings(self.version, limits):
                directory = paths.get(setting.controller)
                if directory is None:
                    continue
                target = directory / setting.file
                if setting.required or target.exists():
                    target.write_text(setting.value)
        except OSError:
            with contextlib.suppress(OSError):
                group.remove(timeout=0)
            raise
        return group


def detect(mountinfo: str, own: str, root: Path = Path("/")) -> Layout:
    """The layout from ``/proc/self/mountinfo`` and ``/proc/self/cgroup`` (their text).

    Mount points are taken under ``root`` (tests pass a directory that fakes the host's).
    Raises :class:`Unavailable` when there is no memory controller to use.
    """
    v1_own, v2_own = _own_cgroups(own)
    v1_mounts, v2_mount = _mounts(mountinfo)
    if "memory" in v1_mounts:
        parents: dict[str, Path] = {}
        for controller in CONTROLLERS:
            if controller in v1_mounts and controller in v1_own:
                found = _directory(root, v1_mounts[controller], v1_own[controller])
                if found is not None:
                    parents[controller] = found
        if "memory" not in parents:
            raise Unavailable("this process's memory cgroup is outside the mounted hierarchy")
        return Layout(1, parents)
    if v2_mount is not None and v2_own is not None:
        directory = _directory(root, v2_mount, v2_own)
        if directory is None:
            raise Unavailable("this process's cgroup is outside the mounted hierarchy")
        try:
            available = (directory / "cgroup.controllers").read_text().split()
        except OSError as exc:
            raise Unavailable(f"cannot read {directory / 'cgroup.controllers'}: {exc}") from exc
        if "memory" not in available:
            raise Unavailable(f"the memory controller is not enabled for {directory}")
        return Layout(2, {c: directory for c in CONTROLLERS if c in available})
    raise Unavailable("no cgroup memory controller is mounted")


def delegate(layout: Layout) -> Layout:
    """On v2, enable the controllers for children of the platform's cgroup.

    When the cgroup holds processes, the kernel refuses; if this process is the only one
    there, it moves into a leaf (``dockyard-platform``) and tries again. Returns the layout
    with the controllers that could be enabled; raises :class:`Unavailable` without memory.
    """
    if layout.version != 2:
        return layout
    (directory,) = set(layout.parents.values())
    enabled = set((directory / "cgroup.subtree_control").read_text().split())
    usable = dict(layout.parents)
    for controller in [c for c in CONTROLLERS if c in layout.parents and c not in enabled]:
        problem = _try_enable(directory, controller)
        if problem is not None and problem.errno == errno.EBUSY and _leave(directory):
            problem = _try_enable(directory, controller)
        if problem is None:
            continue
        if controller == "memory":
            raise Unavailable(
                f"cannot enable the memory controller in {directory} ({problem.strerror}); "
                "run the server in a cgroup of its own, such as a systemd unit with "
                "Delegate=yes"
            ) from problem
        del usable[controller]
    return Layout(2, usable)


@functools.cache
def platform_layout() -> Layout | None:
    """This host's layout for dyno cgroups, worked out once per process.

    None, with one warning line, when dynos run without limits: not root, or no usable
    cgroups.
    """
    if os.geteuid() != 0:
        limits_off(
            "dockyard is not running as root: apps are not isolated from each other (they run "
            "as this user) and dynos run without memory, CPU and process limits"
        )
        return None
    try:
        own = Path("/proc/self/cgroup").read_text()
        layout = detect(Path("/proc/self/mountinfo").read_text(), own)
        return delegate(layout)
    except (Unavailable, OSError) as exc:
        limits_off(f"dynos run without memory, CPU and process limits: {exc}")
        return None


def limits_off(reason: str) -> None:
    """Warn that dynos run without limits, and why; once per process, whatever comes next."""
    if not _WARNED:
        _WARNED.add(reason)
        log.warning("%s", reason)


_WARNED: set[str] = set()


def _own_cgroups(text: str) -> tuple[dict[str, str], str | None]:
    """``/proc/self/cgroup``: the path per v1 controller, and the v2 path."""
    v1: dict[str, str] = {}
    v2: str | None = None
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            v2 = path
        for controller in controllers.split(","):
            v1.setdefault(controller, path)
    return v1, v2


Mounted = tuple[str, str]  # the hierarchy's path that is mounted, and where


def _mounts(text: str) -> tuple[dict[str, Mounted], Mounted | None]:
    """``/proc/self/mountinfo``: the v1 mount per controller, and the v2 mount."""
    v1: dict[str, Mounted] = {}
    v2: Mounted | None = None
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        fields, kind = left.split(), right.split()
        if len(fields) < 5 or len(kind) < 3:
            continue
        mounted = (_unescape(fields[3]), _unescape(fields[4]))
        if kind[0] == "cgroup":
            for option in kind[2].split(","):
                v1.setdefault(option, mounted)
        elif kind[0] == "cgroup2" and (v2 is None or mounted[1] == "/sys/fs/cgroup"):
            v2 = mounted
    return v1, v2


def _directory(root: Path, mounted: Mounted, own: str) -> Path | None:
    """Where cgroup ``own`` shows in a hierarchy mounted as ``(its root, mount point)``."""
    mount_root, point = PurePosixPath(mounted[0]), mounted[1]
    own_path = PurePosixPath(own)
    if own_path != mount_root and mount_root not in own_path.parents:
        return None
    return root / point.lstrip("/") / own_path.relative_to(mount_root)


def _enable(directory: Path, controllers: list[str]) -> None:
    (directory / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in controllers))


def _try_enable(directory: Path, controller: str) -> OSError | None:
    try:
        _enable(directory, [controller])
    except OSError as exc:
        return exc
    return None


def _leave(directory: Path) -> bool:
    """Move this process into a leaf under ``directory`` when it is alone there."""
    if set(_pids(directory)) != {os.getpid()}:
        return False
    leaf = directory / PLATFORM_LEAF
    leaf.mkdir(exist_ok=True)
    (leaf / "cgroup.procs").write_text(str(os.getpid()))
    log.info("moved the server into cgroup %s so that dynos can have cgroups of their own", leaf)
    return True


def _pids(directory: Path) -> list[int]:
    try:
        return [int(pid) for pid in (directory / "cgroup.procs").read_text().split()]
    except (OSError, ValueError):
        return []


def _keyed(path: Path) -> dict[str, int]:
    """A flat-keyed cgroup file (``oom_kill 1`` per line) as a dict; empty when unreadable."""
    found: dict[str, int] = {}
    try:
        text = path.read_text()
    except OSError:
        return found
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            found[key] = int(value)
    return found


def _unescape(field: str) -> str:
    """mountinfo's octal escapes (``\\040`` for a space)."""
    for code in ("040", "011", "012", "134"):
        field = field.replace(f"\\{code}", chr(int(code, 8)))
    return field
