"""Servers the platform runs itself for add-ons (a redis-server each, a SeaweedFS gateway,
a PostgreSQL and a MariaDB).

They are daemons, not children of the control plane: like dynos, they keep serving while the
control plane restarts, and the next one finds them by their pid files. Stopping one is the
platform's shutdown policy: SIGTERM, a grace period, then SIGKILL.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from dockyard.errors import AddonFailed

GRACE = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_pid(pidfile: Path) -> int | None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped by its parent) is not running.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rpartition(")")[2].split()[0] != "Z"
    return True


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.05) -> bool:
    """Poll ``condition`` until it holds (True) or ``timeout`` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def stop(pid: int, grace: float = GRACE, first: signal.Signals = signal.SIGTERM) -> None:
    """SIGTERM (or ``first``), up to ``grace`` seconds to exit, then SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, first)
    if wait_for(lambda: not alive(pid), grace):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not alive(pid), 5)


def tail(path: Path, lines: int = 5) -> str:
    """The last lines of a server's log, for an error message."""
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def spawn_daemon(argv: list[str], logfile: Path) -> int:
    """Start ``argv`` in the background, detached from us, output to ``logfile``; its pid.

    A daemon, not our child: ``sh`` starts it and exits at once, so it outlives the control
    plane like a dyno does (and init reaps it).
    """
    starter = 'logfile=$1; shift; "$@" >>"$logfile" 2>&1 </dev/null & echo $!'
    done = subprocess.run(
        ["/bin/sh", "-c", starter, "sh", str(logfile), *argv],
        capture_output=True,
        text=True,
        check=True,
        start_new_session=True,
        timeout=30,
    )
    return int(done.stdout.strip())


class ServiceHome:
    """A directory a database server runs in, as an unprivileged service user.

    PostgreSQL will not run as root, and MariaDB should not. When the platform is root the
    server runs in a bubblewrap mount namespace where its directory (under the data dir,
    whose parents only root may pass) is bound at ``inside``, and ``setpriv`` drops it to
    the Debian package's own user (``postgres``, ``mysql``). Otherwise it runs as we do,
    in place.
    """

    def __init__(self, where: Path, inside: str, user: str) -> None:
        self.where = where
        self.user = user
        self.as_root = os.geteuid() == 0
        self.inside = inside if self.as_root else str(where)

    def path(self, *parts: str) -> str:
        """A path of the home as the server sees it."""
        return "/".join([self.inside, *parts])

    def _account(self) -> pwd.struct_passwd:
        try:
            return pwd.getpwnam(self.user)
        except KeyError as exc:
            raise AddonFailed(
                f"there is no {self.user!r} user on this host to run the server as; Debian's "
                "server package makes it"
            ) from exc

    def prepare(self) -> None:
        """Make the home, owned by the service user."""
        self.where.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.own(self.where)

    def own(self, path: Path) -> None:
        if self.as_root:
            entry = self._account()
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` as the service user, seeing the home at ``inside``."""
        if not self.as_root:
            return argv
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise AddonFailed(
                "bubblewrap (bwrap) is not installed; it runs the add-ons' database servers "
                "(apt-get install bubblewrap)"
            )
        entry = self._account()
        sandbox = [bwrap, "--new-session", "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
        for top in ("bin", "sbin", "lib", "lib64"):
            host = Path("/") / top
            if host.is_symlink():
                sandbox += ["--symlink", os.readlink(host), f"/{top}"]
            elif host.is_dir():
                sandbox += ["--ro-bind", str(host), f"/{top}"]
        sandbox += ["--proc", "/proc", "--dev", "/dev", "--perms", "1777", "--tmpfs", "/tmp"]  # noqa: S108 - its own
        # bwrap would make the mount point's missing parents 0700, closed to the user.
        for parent in PurePosixPath(self.inside).parents[-2::-1]:
            sandbox += ["--perms", "0755", "--dir", str(parent)]
        sandbox += ["--bind", str(self.where), self.inside, "--chdir", self.inside, "--"]
        sandbox += [
            "/usr/bin/setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}",
            "--clear-groups", "--inh-caps=-all", "--bounding-set=-all", "--",
        ]  # fmt: skip
        return [*sandbox, *argv]
