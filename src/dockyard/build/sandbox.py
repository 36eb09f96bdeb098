"""Running untrusted build steps in a bubblewrap sandbox.

The sandbox sees the host's ``/usr`` and ``/etc`` read-only, a private ``/tmp``, its own
PID, IPC and UTS namespaces, and only the directories a step is given (the app at
``/app``, its cache, its config). The platform's data directory, other apps and ``/root``
are not there. When the platform runs as root, bubblewrap sets up the mounts as root and
``setpriv`` then drops to the app's own unprivileged user, with no capabilities and
``no_new_privs``, before the step runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dockyard.errors import DockyardError

Emit = Callable[[str], Awaitable[None]]
# Top-level directories every sandbox has; mount points under them need no parents made.
_PROVIDED = ("usr", "etc", "proc", "dev", "tmp", "run")
TMP_BYTES = 1024 * 1024 * 1024
PATH = "/app/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class SandboxError(DockyardError):
    """The sandbox could not run a step (not: the step failed)."""


class StepTimeout(DockyardError):
    """A step ran past its time limit and was killed."""


class StepLimit(DockyardError):
    """A step went over a resource limit (such as disk) and was killed."""


GUARD_INTERVAL = 2.0


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    writable: bool = False


@dataclass(frozen=True)
class Identity:
    """Who a step runs as: an unprivileged uid/gid when the platform is root, else itself."""

    uid: int
    gid: int

    @classmethod
    def for_app(cls, app_uid: int) -> Identity:
        if os.geteuid() == 0:
            return cls(app_uid, app_uid)
        return cls(os.geteuid(), os.getegid())


def find_bwrap() -> str:
    found = shutil.which("bwrap")
    if found is None:
        raise SandboxError(
            "bubblewrap (bwrap) is not installed; install it with `apt-get install -y bubblewrap` "
            "(scripts/quickstart does)"
        )
    return found


def bwrap_argv(  # noqa: PLR0917 - tests build dyno-like commands with it positionally
    bwrap: str,
    command: Sequence[str],
    mounts: Sequence[Mount],
    env: Mapping[str, str],
    cwd: str = "/app",
    identity: Identity | None = None,
    *,
    tmp_bytes: int = TMP_BYTES,
) -> list[str]:
    """bubblewrap's command line; with ``identity``, drop to that user inside.

    ``/tmp`` is a tmpfs of ``tmp_bytes`` (dynos pass their own bound; builds keep the default).
    """
    argv = [bwrap, "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc"]
    argv += ["--unshare-uts", "--hostname", "dockyard", "--unshare-cgroup-try"]
    argv += ["--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("bin", "sbin", "lib", "lib64", "lib32", "libx32"):
        host = Path("/") / top
        if host.is_symlink():
            argv += ["--symlink", os.readlink(host), f"/{top}"]
        elif host.is_dir():
            argv += ["--ro-bind", str(host), f"/{top}"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    # A private /tmp in memory, writable by the step's user and bounded in size.
    argv += ["--perms", "1777", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]  # noqa: S108
    argv += ["--perms", "0755", "--size", str(1024 * 1024), "--tmpfs", "/run"]
    # bwrap makes missing parents of a mount point (/root, /opt) mode 0700 as root, which the
    # dropped user could not pass through; make them world-searchable first.
    made: set[str] = set()
    for mount in mounts:
        for parent in PurePosixPath(mount.target).parents[-2::-1]:
            if str(parent) not in made and parent.parts[1] not in _PROVIDED:
                argv += ["--perms", "0755", "--dir", str(parent)]
                made.add(str(parent))
        argv += ["--bind" if mount.writable else "--ro-bind", str(mount.source), mount.target]
    argv += ["--chdir", cwd, "--clearenv"]
    for name, value in env.items():
        argv += ["--setenv", name, value]
    argv.append("--")
    if identity is not None:
        argv += [
            "/usr/bin/setpriv",
            f"--reuid={identity.uid}",
            f"--regid={identity.gid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
        ]
    return [*argv, *command]


async def run(
    command: Sequence[str],
    *,
    mounts: Sequence[Mount],
    env: Mapping[str, str],
    identity: Identity,
    emit: Emit,
    timeout: float,
    cwd: str = "/app",
    guard: Callable[[], str | None] | None = None,
) -> int:
    """Run ``command`` in the sandbox, passing each output line to ``emit``; return its status.

    Raises :class:`StepTimeout` (after killing every process of the step) when it runs
    longer than ``timeout`` seconds, and :class:`StepLimit` when ``guard``, asked every
    couple of seconds, names a limit the step went over.
    """
    drop = os.geteuid() == 0 and identity.uid != 0
    argv = bwrap_argv(
        find_bwrap(),
        command=command,
        mounts=mounts,
        env={"PATH": PATH, **env},
        cwd=cwd,
        identity=identity if drop else None,
    )
    try:
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
            limit=1024 * 1024,
        )
    except OSError as exc:
        raise SandboxError(f"could not start the build sandbox: {exc}") from exc

    async def pump() -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            await emit(line.decode("utf-8", "replace").rstrip("\r\n"))

    async def watch() -> str:
        while True:
            await asyncio.sleep(GUARD_INTERVAL)
            if guard is not None and (problem := await asyncio.to_thread(guard)):
                return problem

    watcher = asyncio.create_task(watch())
    try:
        async with asyncio.timeout(timeout):
            pumping = asyncio.create_task(pump())
            await asyncio.wait({pumping, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if watcher.done():
                pumping.cancel()
                _kill_group(process.pid)
                await process.wait()
                raise StepLimit(watcher.result())
            await pumping
            return await process.wait()
    except TimeoutError as exc:
        _kill_group(process.pid)
        await process.wait()
        raise StepTimeout(f"timed out after {timeout:.0f}s") from exc
    except asyncio.CancelledError:
        _kill_group(process.pid)
        await process.wait()
        raise
    finally:
        watcher.cancel()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
