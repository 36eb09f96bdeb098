"""The PostgreSQL the platform runs for postgres add-ons when the operator names none.

One cluster under ``DATA_DIR/addons/postgres/``, made with Debian's ``initdb`` on first use,
listening on a free port of 127.0.0.1 with password (SCRAM) authentication only. Its
superuser ``dockyard`` has a random password kept in ``state.json`` (readable by the
platform only); the postgres provider manages add-ons through it exactly as through an
operator's server. As root, the server runs as Debian's ``postgres`` user
(:class:`~dockyard.addons._processes.ServiceHome`).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from dockyard.addons import _processes
from dockyard.errors import AddonFailed

log = logging.getLogger("dockyard.addons.postgres")
START_TIMEOUT = 60.0
RECHECK = 1.0  # seconds an answer is trusted for
SUPERUSER = "dockyard"


def bindir() -> Path | None:
    """The newest Debian PostgreSQL's bin directory (``/usr/lib/postgresql/N/bin``)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PostgresServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = _processes.ServiceHome(
            root / "server", "/var/lib/dockyard-postgres", "postgres"
        )
        self._lock = threading.Lock()
        self._answered = -RECHECK

    def __repr__(self) -> str:
        return f"PostgresServer({self.root})"

    def _state(self) -> dict[str, Any]:
        path = self.root / "state.json"
        try:
            found: dict[str, Any] = json.loads(path.read_text())
            return found
        except (OSError, ValueError):
            pass
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        state = {"port": _processes.free_port(), "password": secrets.token_urlsafe(32)}
        path.write_text(json.dumps(state))
        path.chmod(0o600)
        return state

    @property
    def host(self) -> str:
        return "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self._state()["port"])

    def admin_url(self) -> str:
        state = self._state()
        return f"postgresql://{SUPERUSER}:{state['password']}@127.0.0.1:{state['port']}/postgres"

    def _pid(self) -> int | None:
        try:
            first = (self.home.where / "data" / "postmaster.pid").read_text().splitlines()[0]
            pid = int(first)
        except (OSError, ValueError, IndexError):
            return None
        return pid if _processes.alive(pid) else None

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.admin_url(), connect_timeout=3) as connection:
                connection.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def ensure_running(self) -> None:
        """Make the cluster on first use and start it unless it answers; return once it does."""
        with self._lock:
            if time.monotonic() - self._answered < RECHECK and self._pid() is not None:
                return  # the supervisor asks once per add-on on it; once is enough
            if self._pid() is not None and _processes.answers(self.port) and self._answers():
                self._answered = time.monotonic()
                return
            where = bindir()
            if where is None:
                raise AddonFailed(
                    "PostgreSQL is not installed on this host (apt-get install postgresql), "
                    "and no PostgreSQL server is set up for add-ons "
                    "(DOCKYARD_ADDONS_POSTGRES_URL)"
                )
            pid = self._pid()
            if pid is not None:
                _processes.stop(pid)  # running but not answering: hung
            if not (self.home.where / "data" / "PG_VERSION").exists():
                self._initdb(where)
            self._start(where)

    def _initdb(self, where: Path) -> None:
        self.home.prepare()
        shutil.rmtree(self.home.where / "data", ignore_errors=True)  # a half-made one
        secret = self.home.where / "superuser-password"
        secret.write_text(self._state()["password"] + "\n")
        secret.chmod(0o600)
        self.home.own(secret)
        log.info("making the add-ons' PostgreSQL cluster in %s", self.home.where)
        try:
            made = subprocess.run(
                self.home.wrap(
                    [
                        str(where / "initdb"),
                        f"--pgdata={self.home.path('data')}",
                        f"--username={SUPERUSER}",
                        f"--pwfile={self.home.path('superuser-password')}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C.UTF-8",
                        "--no-instructions",
                    ]
                ),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AddonFailed(f"initdb failed for the add-ons' PostgreSQL: {exc}") from exc
        finally:
            secret.unlink(missing_ok=True)
        if made.returncode != 0:
            shutil.rmtree(self.home.where / "data", ignore_errors=True)
            raise AddonFailed(
                "initdb failed for the add-ons' PostgreSQL: " + made.stderr.strip()[-400:]
            )

    def _start(self, where: Path) -> None:
        self.home.prepare()
        port = self.port
        argv = self.home.wrap(
            [
                str(where / "postgres"), "-D", self.home.path("data"), "-p", str(port),
                "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
                "-c", "max_connections=500", "-c", "password_encryption=scram-sha-256",
            ]
        )  # fmt: skip
        log.info("starting the add-ons' PostgreSQL in %s on port %s", self.home.where, port)
        try:
            _processes.spawn_daemon(argv, self.root / "postgres.log")
        except (OSError, subprocess.SubprocessError) as exc:
            raise AddonFailed(f"the add-ons' PostgreSQL would not start: {exc}") from exc
        if not _processes.wait_for(self._answers, START_TIMEOUT, 0.1):
            raise AddonFailed(
                f"the add-ons' PostgreSQL did not answer within {START_TIMEOUT:.0f}s: "
                f"{_processes.tail(self.root / 'postgres.log')}"
            )

    def stop(self) -> None:
        pid = self._pid()
        if pid is not None:
            _processes.stop(pid, first=signal.SIGINT)  # PostgreSQL's fast shutdown
