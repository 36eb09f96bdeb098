"""The ``redis`` add-on, two ways.

- On an operator's Redis 6+ (``DOCKYARD_ADDONS_REDIS_URL``): an ACL user per add-on that may
  touch only the keys and channels under its own prefix (``REDIS_KEY_PREFIX``), and no
  administrative or keyspace-wide command (``KEYS``, ``SCAN``, ``FLUSHALL``, ``CONFIG``…).
- Otherwise, Heroku's way: a ``redis-server`` of its own per add-on, run by the platform
  under the data dir, with a password, ``maxmemory`` by plan and persistence (AOF) on. The
  app's ``default`` user may not reconfigure it; a ``dockyard`` user keeps that for us.

Rotating changes the password; connections already open stay until the app restarts.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from dockyard.addons import _processes
from dockyard.addons._provider import Data, Plan, Provisioning
from dockyard.errors import AddonFailed, InvalidParams

log = logging.getLogger("dockyard.addons.redis")
PLANS = (
    Plan("mini", "25 MB of memory, 20 connections", {"memory_mb": 25, "connections": 20}),
    Plan("standard", "256 MB of memory, 200 connections", {"memory_mb": 256, "connections": 200}),
    Plan("premium", "1 GB of memory, 1000 connections", {"memory_mb": 1024, "connections": 1000}),
)
# What an add-on's user may not do on a shared server: anything that reaches past its keys.
SHARED_RULES = "+@all -@dangerous -@admin -scan -randomkey -select -swapdb -move"
# What an app may not do on its own server: change its limits, users or persistence.
OWN_RULES = (
    "+@all -config -acl -debug -shutdown -module -replicaof -slaveof -failover -sync -psync "
    "-save -bgsave -bgrewriteaof"
)
START_TIMEOUT = 15.0


class Redis:
    service: str = "redis"
    human_name: str = "Redis"
    description: str = "A Redis key-value store"
    aliases: tuple[str, ...] = ("heroku-redis", "rediscloud")
    name_prefix: str = "redis"
    default_attachment: str = "REDIS"
    option_names: tuple[str, ...] = ()  # takes no options: any is refused, naming it
    config_var_suffixes: tuple[str, ...] = ("URL", "KEY_PREFIX")
    plans: Sequence[Plan] = PLANS

    def __init__(self, admin_url: str, root: Path) -> None:
        self.admin_url = admin_url
        self.root = root
        self._warned = False

    def __repr__(self) -> str:
        return f"Redis({self._where() if self.admin_url else self.root})"

    def _where(self) -> str:
        parts = urlsplit(self.admin_url)
        return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"

    # --- either way ---------------------------------------------------------------------

    def provision(self, request: Provisioning) -> Data:
        if self.admin_url:
            return self._provision_user(request)
        return self._provision_server(request)

    def deprovision(self, data: Mapping[str, Any]) -> None:
        if data.get("mode") == "server":
            self._deprovision_server(data)
        else:
            self._deprovision_user(data)

    def config_vars(self, data: Mapping[str, Any]) -> dict[str, str]:
        password = quote(str(data["password"]), safe="")
        if data.get("mode") == "server":
            # The server's default user until the first rotation; a named user after.
            user = quote(str(data.get("user", "")), safe="")
            return {"URL": f"redis://{user}:{password}@{data['host']}:{data['port']}"}
        user = quote(str(data["user"]), safe="")
        return {
            "URL": f"redis://{user}:{password}@{data['host']}:{data['port']}",
            "KEY_PREFIX": str(data["prefix"]),
        }

    def rotate(self, data: Mapping[str, Any]) -> Data:
        """A new user with the old one's rights; the old one works until :meth:`revoke`."""
        user, password = f"u{secrets.token_hex(7)}", secrets.token_urlsafe(32)
        old = str(data.get("user") or "default")
        if data.get("mode") == "server":
            with self._own(data) as client:
                _command(
                    client, "ACL", "SETUSER", user, "reset", "on", f">{password}",
                    "~*", "&*", *OWN_RULES.split(),
                )  # fmt: skip
                _command(client, "CONFIG", "REWRITE")
        else:
            prefix = str(data["prefix"])
            with self._shared() as client:
                _command(
                    client, "ACL", "SETUSER", user, "reset", "on", f">{password}",
                    f"~{prefix}*", "resetchannels", f"&{prefix}*", *SHARED_RULES.split(),
                )  # fmt: skip
                self._save_acl(client)
        retired = [*data.get("retired", []), old]
        return {**data, "user": user, "password": password, "retired": retired}

    def revoke(self, data: Mapping[str, Any]) -> Data:
        """The retired users deleted (which closes their connections)."""
        retired = [str(u) for u in data.get("retired", [])]
        if not retired:
            return dict(data)
        if data.get("mode") == "server":
            with self._own(data) as client:
                for user in retired:
                    if user == "default":
                        # The default user cannot be deleted: it loses its password and
                        # rights, and its connections are closed.
                        _command(client, "ACL", "SETUSER", "default", "off", "resetpass",
                                 "nopass", "resetkeys", "resetchannels", "-@all")  # fmt: skip
                        _command(client, "CLIENT", "KILL", "USER", "default")
                    else:
                        _command(client, "ACL", "DELUSER", user)
                _command(client, "CONFIG", "REWRITE")
        else:
            with self._shared() as client:
                for user in retired:
                    _command(client, "ACL", "DELUSER", user)
                self._save_acl(client)
        return {**data, "retired": []}

    def change_plan(self, data: Mapping[str, Any], plan: Plan) -> Data:
        """A platform-run server gets the plan's memory and connection limits at once (a
        plan whose memory the data does not fit is refused); on a shared server the plans
        are labels."""
        memory_mb = int(plan.limits.get("memory_mb", 25))
        connections = int(plan.limits.get("connections", 20))
        if data.get("mode") == "server":
            with self._own(data) as client:
                used = int(client.info("memory").get("used_memory", 0))
                if used > memory_mb << 20:
                    raise InvalidParams(
                        f"The Redis holds {used >> 20} MB, more than the {plan.name} plan's "
                        f"{memory_mb} MB; delete keys first or choose a larger plan"
                    )
                client.config_set("maxmemory", f"{memory_mb}mb")
                client.config_set("maxclients", str(connections + 4))
                _command(client, "CONFIG", "REWRITE")
        return {**data, "memory_mb": memory_mb, "connections": connections}

    def enforce(self, data: Mapping[str, Any]) -> Data:
        """maxmemory and maxclients are the server's own to enforce."""
        return dict(data)

    def info(self, data: Mapping[str, Any]) -> dict[str, str]:
        if data.get("mode") == "server":
            with self._own(data) as client:
                memory = client.info("memory")
                server = client.info("server")
                clients = client.info("clients")
            return {
                "Status": "Available",
                "Memory": f"{memory.get('used_memory_human')} / {data['memory_mb']} MB",
                "Clients": f"{clients.get('connected_clients')}/{data['connections']}",
                "Version": str(server.get("redis_version")),
                "Persistence": "AOF",
                "Host": f"{data['host']}:{data['port']}",
            }
        with self._shared() as client:
            server = client.info("server")
        return {
            "Status": "Available",
            "Key Prefix": str(data["prefix"]),
            "Version": str(server.get("redis_version")),
            "Host": f"{data['host']}:{data['port']}",
        }

    # --- an ACL user on the operator's server ----------------------------------------------

    @contextmanager
    def _shared(self) -> Iterator[redis.Redis]:
        client = redis.Redis.from_url(self.admin_url, socket_timeout=10, socket_connect_timeout=10)
        try:
            with client:
                yield client
        except redis.ConnectionError as exc:
            raise AddonFailed(f"the Redis server at {self._where()} is unreachable: {exc}") from exc
        except redis.RedisError as exc:
            raise AddonFailed(f"the Redis server at {self._where()} refused: {exc}") from exc

    def _provision_user(self, request: Provisioning) -> Data:
        user, password = f"u{secrets.token_hex(7)}", secrets.token_urlsafe(32)
        prefix = f"{request.name}:"
        try:
            with self._shared() as client:
                _command(
                    client, "ACL", "SETUSER", user, "reset", "on", f">{password}",
                    f"~{prefix}*", "resetchannels", f"&{prefix}*", *SHARED_RULES.split(),
                )  # fmt: skip
                self._save_acl(client)
        except AddonFailed:
            with contextlib.suppress(
                AddonFailed
            ):  # the server is what failed; nothing more can be removed now
                self._deprovision_user({"user": user, "prefix": prefix})
            raise
        parts = urlsplit(self.admin_url)
        return {
            "mode": "acl",
            "host": parts.hostname or "127.0.0.1",
            "port": parts.port or 6379,
            "user": user,
            "password": password,
            "prefix": prefix,
        }

    def _deprovision_user(self, data: Mapping[str, Any]) -> None:
        with self._shared() as client:
            for user in [data["user"], *data.get("retired", [])]:
                _command(client, "ACL", "DELUSER", user)  # also ends its connections
            self._save_acl(client)
            batch: list[bytes] = []
            for key in client.scan_iter(match=f"{data['prefix']}*", count=500):
                batch.append(key)
                if len(batch) >= 500:
                    client.unlink(*batch)
                    batch.clear()
            if batch:
                client.unlink(*batch)

    def _save_acl(self, client: redis.Redis) -> None:
        """Keep the users across a restart of the server, when it has an ACL file."""
        setting = client.config_get("aclfile")
        if setting.get("aclfile"):
            _command(client, "ACL", "SAVE")
        elif not self._warned:
            self._warned = True
            log.warning(
                "the add-ons' Redis server has no aclfile: its add-on users live until it "
                "restarts (set aclfile in its redis.conf to keep them)"
            )

    # --- a redis-server of its own ----------------------------------------------------------

    def _dir(self, addon_id: str) -> Path:
        return self.root / addon_id

    def _provision_server(self, request: Provisioning) -> Data:
        if shutil.which("redis-server") is None:
            raise AddonFailed(
                "redis-server is not installed on this host (apt-get install redis-server), "
                "and no Redis server is set up for add-ons (DOCKYARD_ADDONS_REDIS_URL)"
            )
        data: Data = {
            "mode": "server",
            "dir": str(self._dir(request.addon_id)),
            "host": "127.0.0.1",
            "port": _processes.free_port(),
            "password": secrets.token_urlsafe(32),
            "admin_password": secrets.token_urlsafe(32),
            "memory_mb": int(request.plan.limits.get("memory_mb", 25)),
            "connections": int(request.plan.limits.get("connections", 20)),
        }
        try:
            self._write_config(data)
            self.ensure_running(data)
        except AddonFailed:
            self._deprovision_server(data)
            raise
        return data

    def _write_config(self, data: Mapping[str, Any]) -> None:
        where = Path(data["dir"])
        where.mkdir(parents=True, exist_ok=True, mode=0o700)
        lines = [
            "bind 127.0.0.1",
            f"port {data['port']}",
            "protected-mode yes",
            "daemonize yes",
            f"pidfile {where / 'redis.pid'}",
            f"logfile {where / 'redis.log'}",
            f"dir {where}",
            "appendonly yes",
            "appendfsync everysec",
            f"maxmemory {data['memory_mb']}mb",
            "maxmemory-policy noeviction",
            f"maxclients {data['connections'] + 4}",
            f"user default on >{data['password']} ~* &* {OWN_RULES}",
            f"user dockyard on >{data['admin_password']} ~* &* +@all",
        ]
        config = where / "redis.conf"
        config.write_text("\n".join(lines) + "\n")
        config.chmod(0o600)

    @contextmanager
    def _own(self, data: Mapping[str, Any]) -> Iterator[redis.Redis]:
        client = redis.Redis(
            host=str(data["host"]),
            port=int(data["port"]),
            username="dockyard",
            password=str(data["admin_password"]),
            socket_timeout=10,
            socket_connect_timeout=5,
            retry=Retry(NoBackoff(), 0),  # the supervisor asks again soon; no waiting here
        )
        try:
            with client:
                yield client
        except redis.RedisError as exc:
            raise AddonFailed(
                f"the add-on's redis-server on port {data['port']} failed: {exc}"
            ) from exc

    def _ping(self, data: Mapping[str, Any]) -> bool:
        if not _processes.answers(int(data["port"])):
            return False  # quicker than redis-py's retries with back-off
        try:
            with self._own(data) as client:
                return bool(client.ping())
        except AddonFailed:
            return False

    def ensure_running(self, data: Mapping[str, Any]) -> None:
        """Start the add-on's redis-server unless it answers; return once it does."""
        if data.get("mode") != "server" or self._ping(data):
            return
        where = Path(data["dir"])
        pid = _processes.read_pid(where / "redis.pid")
        if pid is not None:
            _processes.stop(pid)  # running but not answering: hung, or not ours any more
        log.info("starting redis-server for the add-on in %s on port %s", where, data["port"])
        started = subprocess.run(
            ["redis-server", str(where / "redis.conf")],
            capture_output=True,
            text=True,
            check=False,
            start_new_session=True,
            timeout=30,
        )
        if started.returncode != 0:
            raise AddonFailed(f"redis-server would not start: {started.stderr or started.stdout}")
        if not _processes.wait_for(lambda: self._ping(data), START_TIMEOUT, 0.1):
            tail = _tail(where / "redis.log")
            raise AddonFailed(f"redis-server did not answer within {START_TIMEOUT:.0f}s: {tail}")

    def _deprovision_server(self, data: Mapping[str, Any]) -> None:
        where = Path(data["dir"])
        pid = _processes.read_pid(where / "redis.pid")
        if pid is not None:
            _processes.stop(pid)
        shutil.rmtree(where, ignore_errors=True)


def _command(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]  # untyped in redis-py


def _tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text().splitlines()[-lines:])
    except OSError:
        return "(no log)"


def stop_all(root: Path) -> None:
    """Stop every add-on redis-server under ``root`` (tests, and an operator's teardown)."""
    for pidfile in root.glob("*/redis.pid"):
        pid = _processes.read_pid(pidfile)
        if pid is not None:
            _processes.stop(pid)
