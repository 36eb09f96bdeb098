"""git over SSH: ``ssh://git@<host>:<port>/<app>.git``, served with asyncssh.

Clients authenticate with a public key that a user registered through ``/account/keys``;
passwords and keyboard-interactive logins are refused. A session may only run
``git-receive-pack '<app>.git'`` or ``git-upload-pack '<app>.git'`` for an app the key's
user may access. Those run the real git commands on the app's repository, with the same
environment (and so the same pre-receive hook and build) as a push over smart HTTP.
Anything else — a shell, another command, an app the user can't see — gets a one-line
refusal on stderr and exit status 1.

The host key is made on first start (ed25519, in the data dir, mode 0600) and reused, so
clients see the same host key across restarts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import os
import re
import shlex
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncssh
from sqlalchemy import select

from dockyard import apps
from dockyard.errors import DockyardError, NotFound, SettingsError, StoreError
from dockyard.receive.repos import Repositories, Ticket
from dockyard.settings import Settings
from dockyard.store import Database, SSHKey

log = logging.getLogger("dockyard.receive.ssh")

HOST_KEY_NAME = "ssh_host_ed25519_key"
SERVICES = ("git-receive-pack", "git-upload-pack")
_APP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,63}$")
_GIT_PROTOCOL = re.compile(r"^[A-Za-z0-9=:._-]{1,100}$")
_CHUNK = 64 * 1024
_USAGE = "use git with ssh://git@HOST:PORT/APP.git"


class Refused(Exception):
    """The session's request is not served; the message is shown to the client."""


@dataclass(frozen=True)
class Request:
    service: str
    app: str


def parse_command(command: str | None) -> Request:
    """Read ``git-receive-pack '/app.git'`` (or upload-pack); refuse anything else."""
    if command is None:
        raise Refused(f"Dockyard does not provide shell access; {_USAGE}")
    try:
        words = shlex.split(command)
    except ValueError:
        words = []
    if len(words) != 2 or words[0] not in SERVICES:
        raise Refused(
            f"Dockyard only serves git-receive-pack and git-upload-pack over SSH; {_USAGE}"
        )
    path = words[1].removeprefix("/").removesuffix("/").removesuffix(".git")
    if not _APP.match(path):
        raise Refused(f"{words[1]!r} is not an app's git repository; {_USAGE}")
    return Request(words[0], path)


def fingerprint(key_blob: bytes) -> str:
    """The OpenSSH SHA256 fingerprint, as :func:`dockyard.accounts.parse_public_key` gives it."""
    digest = base64.b64encode(hashlib.sha256(key_blob).digest()).decode().rstrip("=")
    return f"SHA256:{digest}"


def _blob(public_key: str) -> bytes | None:
    parts = public_key.split()
    try:
        return base64.b64decode(parts[1], validate=True) if len(parts) >= 2 else None
    except binascii.Error:
        return None


def host_key(data_dir: Path) -> asyncssh.SSHKey:
    """The server's host key: made once, kept in the data dir readable only by the server."""
    path = data_dir / HOST_KEY_NAME
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:
        key = asyncssh.generate_private_key("ssh-ed25519", comment="dockyard host key")
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(key.export_private_key())
        log.info("made the SSH host key %s", path)
    try:
        return asyncssh.read_private_key(path)
    except (OSError, asyncssh.KeyImportError) as exc:
        raise StoreError(
            f"could not read the SSH host key {path}: {exc}; remove the file to have a new one made"
        ) from exc


class _Connection(asyncssh.SSHServer):
    """One client connection: authenticates by public key against the registered keys."""

    def __init__(self, receiver: SSHReceiver) -> None:
        self.receiver = receiver
        self.connection: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.connection = conn
        self.receiver.connections.add(conn)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.connection is not None:
            self.receiver.connections.discard(self.connection)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def kbdint_auth_supported(self) -> bool:
        return False

    def public_key_auth_supported(self) -> bool:
        return True

    async def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        blob = key.public_data
        user_id = await asyncio.to_thread(self.receiver.key_owner, blob)
        if user_id is None or self.connection is None:
            log.info("refused SSH key %s for %s: not registered", fingerprint(blob), username)
            return False
        # asyncssh validates the key again, with its signature, right before it accepts a
        # login, so the last key validated here is the one the client authenticated with.
        self.connection.set_extra_info(dockyard_key=fingerprint(blob))
        return True


class SSHReceiver:
    """The git-over-SSH listener of the control plane."""

    def __init__(self, settings: Settings, database: Database, repos: Repositories) -> None:
        self.settings = settings
        self.database = database
        self.repos = repos
        self.connections: set[asyncssh.SSHServerConnection] = set()
        self.children: set[asyncio.subprocess.Process] = set()
        self._acceptor: asyncssh.SSHAcceptor | None = None

    async def start(self) -> None:
        """Listen on the API's host and ``settings.ssh_port``; return once it accepts."""
        key = await asyncio.to_thread(host_key, self.settings.data_dir)
        # asyncssh logs every channel request at INFO; this module logs what an operator needs.
        logging.getLogger("asyncssh").setLevel(logging.WARNING)
        host = self.settings.api_host
        try:
            self._acceptor = await asyncssh.listen(
                host,
                self.settings.ssh_port,
                server_factory=lambda: _Connection(self),
                process_factory=self._session,
                server_host_keys=[key],
                encoding=None,
                # A terminal is allowed only so that an interactive `ssh git@host` reads the
                # one-line refusal; no line editing, so git's binary protocol passes untouched.
                allow_pty=True,
                line_editor=False,
                agent_forwarding=False,
                x11_forwarding=False,
                allow_scp=False,
                password_auth=False,
                kbdint_auth=False,
                server_version="Dockyard",
            )
        except OSError as exc:
            raise SettingsError(
                f"could not listen for git over SSH on {host}:{self.settings.ssh_port}: "
                f"{exc.strerror or exc}; set DOCKYARD_SSH_PORT to a free port"
            ) from exc
        log.info(
            "git over SSH on %s:%d, host key %s",
            host,
            self.settings.ssh_port,
            key.get_fingerprint("sha256"),
        )

    async def stop(self) -> None:
        """Stop listening, end running git commands and close every connection."""
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
            self._acceptor = None
        for child in list(self.children):
            _kill(child)
        for conn in list(self.connections):
            conn.close()
        for conn in list(self.connections):
            await conn.wait_closed()

    def key_owner(self, blob: bytes) -> uuid.UUID | None:
        """The id of the user who registered this public key (type and key data), if any."""
        try:
            with self.database.transaction() as session:
                key = session.scalar(select(SSHKey).where(SSHKey.fingerprint == fingerprint(blob)))
                if key is None or _blob(key.public_key) != blob:
                    return None
                return key.user_id
        except DockyardError as exc:
            log.error("could not check an SSH key: %s", exc.message)
            return None

    def _authorize(self, key: str, request: Request) -> tuple[Ticket, str]:
        """The push ticket for this request and the email of the key's user."""
        with self.database.transaction() as session:
            found = session.scalar(select(SSHKey).where(SSHKey.fingerprint == key))
            if found is None:  # removed since the client logged in
                raise Refused(
                    "this SSH key is no longer registered; add it with `dockyard keys:add`"
                )
            user = found.user
            try:
                app = apps.find(session, user, request.app)
            except NotFound as exc:
                log.info("refused %s for %s: %s", request.service, user.email, exc.message)
                raise Refused(exc.message) from exc
            ticket = Ticket(app.id, found.user_id, self.repos.path(app.id), app.deploy_branch)
            return ticket, user.email

    async def _session(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        status = 1
        key = str(process.get_extra_info("dockyard_key", ""))
        try:
            request = parse_command(process.command)
            ticket, email = await asyncio.to_thread(self._authorize, key, request)
            log.info("%s for %s by %s (key %s)", request.service, request.app, email, key)
            status = await self._git(process, request, ticket)
            log.info("%s for %s ended with status %d", request.service, request.app, status)
        except Refused as exc:
            _say(process, str(exc))
        except DockyardError as exc:
            log.error("git over SSH failed: %s", exc.message)
            _say(process, f"the server could not serve this request: {exc.message}")
        finally:
            with contextlib.suppress(OSError, asyncssh.Error):
                process.exit(status)

    async def _git(
        self, process: asyncssh.SSHServerProcess[bytes], request: Request, ticket: Ticket
    ) -> int:
        repo = await asyncio.to_thread(self.repos.ensure, ticket.app_id)
        push_token = self.repos.issue(ticket) if request.service == "git-receive-pack" else None
        try:
            env = self.repos.environment(push_token or "", ticket)
            # Sent by git (SendEnv) to ask for protocol version 2.
            protocol = process.env.get("GIT_PROTOCOL", "")
            if _GIT_PROTOCOL.match(protocol):
                env["GIT_PROTOCOL"] = protocol
            return await self._run(
                process, ["git", request.service.removeprefix("git-"), str(repo)], env
            )
        finally:
            if push_token:
                self.repos.revoke(push_token)

    async def _run(
        self, process: asyncssh.SSHServerProcess[bytes], argv: list[str], env: dict[str, str]
    ) -> int:
        # A session of its own, so that a client hanging up ends the hook and build too.
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            start_new_session=True,
        )
        assert child.stdin is not None
        assert child.stdout is not None
        assert child.stderr is not None
        self.children.add(child)
        feeder = asyncio.create_task(_feed(process.stdin, child.stdin))
        relays = [
            asyncio.create_task(_relay(child.stdout, process.stdout)),
            asyncio.create_task(_relay(child.stderr, process.stderr)),
        ]
        exited = asyncio.create_task(child.wait())
        hung_up = asyncio.create_task(process.wait_closed())
        try:
            await asyncio.wait({exited, hung_up}, return_when=asyncio.FIRST_COMPLETED)
            if not exited.done():
                log.info("the SSH client hung up; ending %s", argv[1])
                _kill(child)
            code = await exited
            await asyncio.gather(*relays)
        finally:
            for task in (feeder, hung_up, exited, *relays):
                task.cancel()
            if child.returncode is None:
                _kill(child)
                await child.wait()
            self.children.discard(child)
        return code if code >= 0 else 128 - code


def _kill(child: asyncio.subprocess.Process) -> None:
    if child.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGKILL)


async def _feed(source: asyncssh.SSHReader[bytes], target: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(_CHUNK):
            target.write(chunk)
            await target.drain()
    except (OSError, asyncssh.Error):
        pass  # the client or the command went away; the other side of _run notices
    finally:
        with contextlib.suppress(OSError):
            target.close()


async def _relay(source: asyncio.StreamReader, target: asyncssh.SSHWriter[bytes]) -> None:
    writable = True
    while chunk := await source.read(_CHUNK):
        if not writable:
            continue  # keep reading so the command never blocks on a full pipe
        try:
            target.write(chunk)
            await target.drain()
        except (OSError, asyncssh.Error):
            writable = False


def _say(process: asyncssh.SSHServerProcess[bytes], message: str) -> None:
    end = "\r\n" if process.term_type else "\n"  # a terminal in raw mode needs the \r
    with contextlib.suppress(OSError, asyncssh.Error):
        process.stderr.write(f"{message}{end}".encode())
