"""The MariaDB the platform runs for mysql add-ons when the operator names none.

One server under ``DATA_DIR/addons/mysql/``, its data directory made with Debian's
``mariadb-install-db`` on first use, listening on a free port of 127.0.0.1. Its admin user
``dockyard``@``127.0.0.1`` has a random password kept in ``state.json`` (readable by the
platform only), set by an init file at every start; ``root`` may log in only through the
server's own socket as the OS root. As root, the server runs as Debian's ``mysql`` user
(:class:`~dockyard.addons._processes.ServiceHome`).
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pymysql

from dockyard.addons import _processes
from dockyard.errors import AddonFailed

log = logging.getLogger("dockyard.addons.mysql")
START_TIMEOUT = 60.0
RECHECK = 1.0  # seconds an answer is trusted for
ADMIN = "dockyard"


def binaries() -> tuple[str, str] | None:
    """``mariadb-install-db`` and ``mariadbd``, if MariaDB's server is installed."""
    install = shutil.which("mariadb-install-db")
    server = shutil.which("mariadbd") or (
        "/usr/sbin/mariadbd" if Path("/usr/sbin/mariadbd").exists() else None
    )
    return (install, server) if install and server else None


class MariaDBServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = _processes.ServiceHome(root / "server", "/var/lib/dockyard-mysql", "mysql")
        self._lock = threading.Lock()
        self._answered = -RECHECK

    def __repr__(self) -> str:
        return f"MariaDBServer({self.root})"

    def _state(self) -> dict[str, Any]:
        path = self.root / "state.json"
        try:
            found: dict[str, Any] = json.loads(path.read_text())
            return found
        except (OSError, ValueError):
            pass
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        state = {"port": _processes.free_port(), "password": secrets.token_urlsafe(24)}
        path.write_text(json.dumps(state))
        path.chmod(0o600)
        return state

    @property
    def port(self) -> int:
        return int(self._state()["port"])

    def admin_url(self) -> str:
        state = self._state()
        return f"mysql://{ADMIN}:{quote(state['password'], safe='')}@127.0.0.1:{state['port']}"

    def _pid(self) -> int | None:
        try:
            pid = int((self.home.where / "mysqld.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _processes.alive(pid) else None

    def _answers(self) -> bool:
        state = self._state()
        try:
            connection = pymysql.connect(
                host="127.0.0.1",
                port=int(state["port"]),
                user=ADMIN,
                password=str(state["password"]),
                connect_timeout=3,
            )
        except pymysql.MySQLError:
            return False
        connection.close()
        return True

    def ensure_running(self) -> None:
        """Make the data directory on first use, start the server unless it answers; return
        once it does."""
        with self._lock:
            if time.monotonic() - self._answered < RECHECK and self._pid() is not None:
                return  # the supervisor asks once per add-on on it; once is enough
            if self._pid() is not None and _processes.answers(self.port) and self._answers():
                self._answered = time.monotonic()
                return
            found = binaries()
            if found is None:
                raise AddonFailed(
                    "MariaDB's server is not installed on this host (apt-get install "
                    "mariadb-server), and no MySQL server is set up for add-ons "
                    "(DOCKYARD_ADDONS_MYSQL_URL)"
                )
            install, server = found
            pid = self._pid()
            if pid is not None:
                _processes.stop(pid)  # running but not answering: hung
            if not (self.home.where / "data" / "mysql").is_dir():
                self._install(install)
            self._start(server)

    def _install(self, install: str) -> None:
        self.home.prepare()
        shutil.rmtree(self.home.where / "data", ignore_errors=True)  # a half-made one
        log.info("making the add-ons' MariaDB data directory in %s", self.home.where)
        try:
            made = subprocess.run(
                self.home.wrap(
                    [
                        install,
                        "--no-defaults",
                        f"--datadir={self.home.path('data')}",
                        "--auth-root-authentication-method=socket",
                        "--skip-test-db",
                    ]
                ),
                capture_output=True,
                text=True,
                timeout=120,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AddonFailed(f"mariadb-install-db failed: {exc}") from exc
        if made.returncode != 0:
            shutil.rmtree(self.home.where / "data", ignore_errors=True)
            problem = [line for line in made.stdout.splitlines() if "ERROR" in line]
            raise AddonFailed(
                "mariadb-install-db failed: " + (" | ".join(problem) or made.stderr[-400:])
            )

    def _write_init(self) -> None:
        """What the server runs at every start: the admin user, with its password."""
        password = str(self._state()["password"]).replace("'", "")
        init = self.home.where / "init.sql"
        init.write_text(
            f"CREATE USER IF NOT EXISTS '{ADMIN}'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
            f"ALTER USER '{ADMIN}'@'127.0.0.1' IDENTIFIED BY '{password}';\n"
            f"GRANT ALL PRIVILEGES ON *.* TO '{ADMIN}'@'127.0.0.1' WITH GRANT OPTION;\n"
        )
        init.chmod(0o600)
        self.home.own(init)

    def _start(self, server: str) -> None:
        self.home.prepare()
        self._write_init()
        port = self.port
        argv = self.home.wrap(
            [
                server, "--no-defaults", f"--datadir={self.home.path('data')}",
                f"--socket={self.home.path('mysqld.sock')}", f"--port={port}",
                "--bind-address=127.0.0.1", f"--pid-file={self.home.path('mysqld.pid')}",
                f"--log-error={self.home.path('error.log')}",
                f"--init-file={self.home.path('init.sql')}", "--skip-name-resolve",
                "--max-connections=500", "--skip-log-bin", "--innodb-buffer-pool-size=64M",
            ]
        )  # fmt: skip
        log.info("starting the add-ons' MariaDB in %s on port %s", self.home.where, port)
        try:
            _processes.spawn_daemon(argv, self.root / "mariadb.log")
        except (OSError, subprocess.SubprocessError) as exc:
            raise AddonFailed(f"the add-ons' MariaDB would not start: {exc}") from exc
        if not _processes.wait_for(self._answers, START_TIMEOUT, 0.1):
            raise AddonFailed(
                f"the add-ons' MariaDB did not answer within {START_TIMEOUT:.0f}s: "
                f"{_processes.tail(self.home.where / 'error.log')}"
            )

    def stop(self) -> None:
        pid = self._pid()
        if pid is not None:
            _processes.stop(pid, grace=30)
