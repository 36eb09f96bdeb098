"""The HAProxy driver: the route table as a running HAProxy, changed without reloads.

HAProxy runs in master-worker mode, as a daemon of its own: ``dockyard server`` starts it
once (or adopts the one it started before, found by its pid file and master socket) and a
SIGKILL of the control plane leaves it serving. Everything lives in ``<data dir>/router``.

What changes often goes through the runtime API, through the master socket, never a reload:

- each app is a backend ``app-<id>`` with a fixed number of server *slots*
  (``s1``…``sN``); a healthy web dyno gets a free slot (``set server … addr``, then
  ``state ready``), a dyno that leaves gets ``state maint``, which sends it no new requests
  and lets the ones in flight finish;
- ``hosts.map`` maps each hostname (wildcards too) to its backend; ``apps.map`` holds each
  backend's state (``web``, ``idle``, ``maintenance``), which picks the error page when no
  dyno can take a request. Both are changed with ``add/set/del map`` and rewritten on disk,
  so that a restarted HAProxy reads the same.

Only structural changes — an app created or destroyed, a backend that needs more slots, new
settings — rewrite ``haproxy.cfg`` and reload through the master socket: the new worker takes
the listening sockets over from the old one (``expose-fd listeners``) and the servers' state
from the file dumped just before (``server-state-file``), and the old worker finishes its
requests. :func:`plan` and :func:`render_config` are pure, for tests. HTTPS, its certificates
(changed through the runtime API too) and HTTPS-only apps: :mod:`dockyard.router.tls`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dockyard.domains import WILDCARD_DEPTH
from dockyard.router import tls
from dockyard.router.driver import RouterError
from dockyard.router.logs import LOG_FORMAT
from dockyard.router.pages import PAGES
from dockyard.router.table import API_BACKEND, IDLE, MAINTENANCE, WEB, RouteTable, Upstream

log = logging.getLogger("dockyard.router")

CHALLENGE_PATH = "/.well-known/acme-challenge/"
# ACME tokens and key authorizations are base64url (RFC 8555 8.1, 8.3); nothing else may reach
# the runtime API's command line.
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
_KEY_AUTHORIZATION = re.compile(r"^[A-Za-z0-9_-]{1,256}\.[A-Za-z0-9_-]{1,256}$")
LOG_RING = "dockyard-log"
LOG_RING_BYTES = 4 * 1024 * 1024  # router log records kept while the control plane is away
MIN_SLOTS = 16  # server slots per app backend: room for a rollout of 8 web dynos
UNKNOWN_BACKEND = "_unknown"
SOCKET_TIMEOUT = 10.0
START_TIMEOUT = 20.0
# How the runtime API's replies start when a command failed (on success it answers nothing,
# a note, or the data asked for).
_FAILED = re.compile(
    r"(No such|Unknown|Can't|Cannot|Require|Missing|Invalid|Permission denied|Key not found|"
    r"entry not found|Failed|Out of memory|This command is restricted)"
)
_FMAINT, _IMAINT, _RMAINT = 0x01, 0x02, 0x20
_FDRAIN, _IDRAIN = 0x08, 0x10


@dataclass(frozen=True)
class Options:
    """What the configuration depends on besides the route table (from the settings)."""

    http_port: int
    bind_address: str = ""  # all addresses
    connect_timeout: float = 5.0
    first_byte_timeout: float = 30.0  # H12
    idle_timeout: float = 55.0  # clients, keep-alive and WebSockets
    request_timeout: float = 10.0  # to receive a request's headers (slowloris)
    max_body_bytes: int | None = None  # an app's request bodies, by Content-Length (413)
    api_timeout: float = 960.0  # git pushes stream a whole build
    hard_stop_after: float = 600.0  # how long an old worker may finish its connections
    threads: int | None = None  # HAProxy's nbthread; None: one per CPU (HAProxy's default)
    https_port: int | None = None  # HTTPS with the table's certificates (None: no HTTPS)


@dataclass(frozen=True)
class Paths:
    """The files of one HAProxy, under ``<data dir>/router``."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "haproxy.cfg"

    @property
    def hosts_map(self) -> Path:
        return self.root / "hosts.map"

    @property
    def apps_map(self) -> Path:
        return self.root / "apps.map"

    @property
    def timeouts_map(self) -> Path:
        """Apps' own timeouts, in ms: ``<backend>:server`` (first byte), ``<backend>:tunnel``."""
        return self.root / "timeouts.map"

    @property
    def acme_map(self) -> Path:
        """ACME HTTP-01 tokens the platform answers → their key authorizations."""
        return self.root / "acme.map"

    @property
    def server_state(self) -> Path:
        return self.root / "servers.state"

    @property
    def master_socket(self) -> Path:
        return self.root / "master.sock"

    @property
    def admin_socket(self) -> Path:
        return self.root / "admin.sock"

    @property
    def log_socket(self) -> Path:
        return self.root / "log.sock"

    @property
    def pidfile(self) -> Path:
        return self.root / "haproxy.pid"

    @property
    def output(self) -> Path:
        return self.root / "haproxy.log"

    @property
    def pages(self) -> Path:
        return self.root / "pages"

    def page(self, code: str) -> Path:
        suffix = "http" if code in _RAW_PAGES else "html"
        return self.pages / f"{code}.{suffix}"


# Pages HAProxy sends for its own errors (full HTTP responses, by status) rather than ours.
_RAW_PAGES = {"H12": 504, "H13": 502, "H99": 500}


@dataclass(frozen=True)
class Slot:
    """One server slot of a backend, as ``show servers state`` reports it."""

    name: str
    addr: str
    port: int
    admin: int  # HAProxy's admin state flags

    @property
    def active(self) -> bool:
        """It may get requests (ready, or draining)."""
        return not self.admin & (_FMAINT | _IMAINT | _RMAINT)

    @property
    def draining(self) -> bool:
        return self.active and bool(self.admin & (_FDRAIN | _IDRAIN))


@dataclass
class Observed:
    """The running HAProxy's state, read through the runtime API."""

    backends: set[str] = field(default_factory=set)
    slots: dict[str, dict[str, Slot]] = field(default_factory=dict)
    hosts: dict[str, list[str]] = field(default_factory=dict)
    apps: dict[str, list[str]] = field(default_factory=dict)
    timeouts: dict[str, list[str]] = field(default_factory=dict)
    maps: bool = True  # the configuration uses both maps

    def upstreams(self, backend: str) -> frozenset[Upstream]:
        return frozenset(
            Upstream(s.addr, s.port) for s in self.slots.get(backend, {}).values() if s.active
        )


# -- the configuration -----------------------------------------------------------------------


def layout(table: RouteTable, observed: Observed) -> dict[str, int]:
    """How many slots each app backend has: what it has now, more when a rollout needs more."""
    slots = {}
    for route in table.apps:
        have = len(observed.slots.get(route.backend, {}))
        addresses = {(u.host, u.port) for u in route.upstreams}
        addresses |= {(u.host, u.port) for u in observed.upstreams(route.backend)}
        need = len(addresses)
        if have >= max(need, MIN_SLOTS):
            slots[route.backend] = have
        else:
            size = MIN_SLOTS
            while size < need:
                size *= 2
            slots[route.backend] = max(size, have)
    return slots


def _seconds(value: float) -> str:
    return f"{round(value * 1000)}ms"


def render_config(
    table: RouteTable, slots: Mapping[str, int], options: Options, paths: Paths
) -> str:
    """``haproxy.cfg`` for the table's apps with ``slots`` each; no dyno addresses in it."""
    pages = {code: paths.page(code) for code in PAGES}
    lines = [
        "# Written by dockyard server; changes made here are lost at the next change.",
        "global",
        f"    stats socket {paths.admin_socket} mode 600 level admin expose-fd listeners",
        f"    log ring@{LOG_RING} len 8192 format raw local0 info",
        f"    server-state-file {paths.server_state}",
        f"    hard-stop-after {_seconds(options.hard_stop_after)}",
        *([f"    nbthread {options.threads}"] if options.threads else []),
        "",
        # Router log records go to a ring, which HAProxy forwards to the control plane over
        # one stream (see dockyard.router.logs); a full ring drops records, never waits.
        f"ring {LOG_RING}",
        "    format raw",
        "    maxlen 8192",
        f"    size {LOG_RING_BYTES}",
        "    timeout connect 1s",
        "    timeout server 10s",
        f"    server plane unix@{paths.log_socket} log-proto octet-count",
        "",
        "defaults",
        "    mode http",
        "    log global",
        "    load-server-state-from-file global",
        "    option dontlognull",
        f"    timeout connect {_seconds(options.connect_timeout)}",
        f"    timeout client {_seconds(options.idle_timeout)}",
        f"    timeout http-request {_seconds(options.request_timeout)}",
        f"    timeout http-keep-alive {_seconds(options.idle_timeout)}",
        f"    timeout server {_seconds(options.first_byte_timeout)}",
        f"    timeout tunnel {_seconds(options.idle_timeout)}",
        "    timeout client-fin 5s",
        # A request that could not be sent (the dyno just exited) is retried on another dyno;
        # one that got no answer at all (it was killed) too, if its method is idempotent.
        "    retries 3",
        "    option redispatch 1",
        "    retry-on conn-failure empty-response",
        f'    log-format "{LOG_FORMAT}"',
        *(f"    errorfile {status} {pages[code]}" for code, status in _RAW_PAGES.items()),
        f"    errorfile 503 {paths.page('H10').with_suffix('.http')}",
        "",
        "frontend http",
        f"    bind {options.bind_address}:{options.http_port}",
        *(
            [tls.bind_line(paths.root, options.bind_address, options.https_port)]
            if options.https_port is not None and tls.enabled(table, options.https_port)
            else []
        ),
        *challenge_rules(paths),
        "    http-request set-var(txn.host) req.hdr(host),field(1,:),lower,regsub([.]$,)",
        f"    http-request set-var(txn.be) var(txn.host),map_str({paths.hosts_map})",
    ]
    for depth in range(1, WILDCARD_DEPTH + 1):
        labels = "[^.]+[.]" * depth
        lines.append(
            f"    http-request set-var(txn.be) var(txn.host),regsub(^{labels},*.),"
            f"map_str({paths.hosts_map}) unless {{ var(txn.be) -m found }}"
        )
    if options.https_port is not None and tls.enabled(table, options.https_port):
        lines += tls.redirect_rules(paths.root, options.https_port)
    lines += [
        # Heroku's rule: an X-Request-Id of 20 to 200 such characters is kept, else replaced.
        "    http-request set-var(txn.rid) req.hdr(x-request-id) "
        "if { req.hdr(x-request-id) -m reg ^[A-Za-z0-9+=/-]{20,200}$ }",
        "    http-request set-var(txn.rid) uuid() unless { var(txn.rid) -m found }",
        "    http-request set-header X-Request-Id %[var(txn.rid)]",
        '    http-request set-header X-Forwarded-For "%[req.fhdr(x-forwarded-for)], %[src]" '
        "if { req.fhdr(x-forwarded-for) -m found }",
        "    http-request set-header X-Forwarded-For %[src] "
        "unless { req.fhdr(x-forwarded-for) -m found }",
        "    http-request set-var(txn.fwd) req.fhdr(x-forwarded-for)",
        tls.forwarded_proto(),
        "    http-request set-header X-Forwarded-Port %[dst_port]",
        "    http-request set-header X-Request-Start %[date(0,ms)]",
        '    http-request add-header Via "1.1 dockyard"',
        # The app's state picks the page when no dyno can take the request (its backend's).
        f"    http-request set-var(txn.state) var(txn.be),map_str({paths.apps_map},{WEB})",
        "    http-request disable-l7-retry unless METH_GET or METH_HEAD or METH_OPTIONS",
        "    use_backend %[var(txn.be)] if { var(txn.be) -m found }",
        f"    default_backend {UNKNOWN_BACKEND}",
        "",
        f"backend {UNKNOWN_BACKEND}",
        "    http-request set-var(txn.code) str(404)",
        # Only a host made of these characters is put in the page, so it cannot inject HTML.
        "    http-request set-var(txn.safehost) var(txn.host) "
        "if { var(txn.host) -m reg ^[a-z0-9.-]{1,253}$ }",
        '    http-request return status 404 content-type "text/html; charset=utf-8" '
        f"lf-file {pages['404']} hdr Dockyard-Error 404 hdr Cache-Control no-store",
    ]
    if table.api is not None:
        lines += [
            "",
            f"backend {API_BACKEND}",
            f"    timeout server {_seconds(options.api_timeout)}",
            f"    timeout tunnel {_seconds(options.api_timeout)}",
            # The control plane not answering is the platform's failure, not an app's.
            *(f"    errorfile {status} {paths.page('H99')}" for status in (502, 503, 504)),
            f"    server api {_address(table.api.host)}:{table.api.port}",
        ]
    for route in sorted(table.apps, key=lambda r: r.backend):
        backend = route.backend
        lines += ["", f"backend {backend}", "    balance roundrobin"]
        refusals = [
            ("H80", f"{{ var(txn.state) -m str {MAINTENANCE} }}"),
            ("H14", f"{{ nbsrv eq 0 }} {{ var(txn.state) -m str {IDLE} }}"),
            ("H10", "{ nbsrv eq 0 }"),
        ]
        if options.max_body_bytes is not None:
            limit = options.max_body_bytes
            refusals.append(("413", f"{{ req.hdr_val(content-length) gt {limit} }}"))
        for code, condition in refusals:
            lines += [
                f"    http-request set-var(txn.code) str({code}) if {condition}",
                f"    http-request return status {PAGES[code].status} "
                f'content-type "text/html; charset=utf-8" '
                f"file {pages[code]} hdr Dockyard-Error {code} hdr Cache-Control no-store "
                f"if {condition}",
            ]
        # The app's own timeouts (runtime map entries), else the platform's.
        lines += [
            f"    http-request set-timeout {kind} be_name,concat(:{kind}),"
            f"map_str_int({paths.timeouts_map},{round(default * 1000)})"
            for kind, default in (
                ("server", options.first_byte_timeout),
                ("tunnel", options.idle_timeout),
            )
        ]
        lines += [f"    server s{n} 127.0.0.1:1 disabled" for n in range(1, slots[backend] + 1)]
    return "\n".join(lines) + "\n"


def challenge_rules(paths: Paths) -> list[str]:
    """Answer the ACME HTTP-01 challenges the platform has published, before any other rule.

    They come first so that no app, maintenance page or HTTPS redirect stands in the CA's way;
    a token the platform did not publish goes on to the app like any other request.
    """
    return [
        f"    http-request set-var(txn.acme) path,field(4,/),map_str({paths.acme_map}) "
        f"if {{ path_beg {CHALLENGE_PATH} }}",
        "    http-request return status 200 content-type text/plain "
        "lf-string %[var(txn.acme)] if { var(txn.acme) -m found }",
    ]


def _address(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def page_files(paths: Paths) -> dict[Path, str]:
    """The error pages as HAProxy reads them: HTTP responses, HTML bodies, a log-format file."""
    files = {}
    for code, page in PAGES.items():
        if code == "404":
            # A log-format file: '%' is escaped, and the host goes in as a variable.
            body = page.body("\0").replace("%", "%%").replace("\0", "%[var(txn.safehost)]")
            files[paths.page(code)] = body
        elif code in _RAW_PAGES or code == "H10":
            body = page.body()
            head = (
                f"HTTP/1.1 {page.status} Service Unavailable\r\n"
                "Content-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body.encode())}\r\n"
                f"Dockyard-Error: {code}\r\n"
                "Cache-Control: no-store\r\n"
                "Connection: close\r\n\r\n"
            )
            files[paths.pages / f"{code}.http"] = head + body
            if code == "H10":
                files[paths.page(code)] = body
        else:
            files[paths.page(code)] = page.body()
    return files


def map_text(entries: Mapping[str, str]) -> str:
    return "".join(f"{key} {value}\n" for key, value in sorted(entries.items()))


def app_states(table: RouteTable) -> dict[str, str]:
    return {route.backend: route.state for route in table.apps}


def app_timeouts(table: RouteTable) -> dict[str, str]:
    """The timeouts map: the apps that set their own, ``<backend>:server|tunnel`` → ms."""
    found = {}
    for route in table.apps:
        if route.timeout is not None:
            found[f"{route.backend}:server"] = str(route.timeout * 1000)
        if route.idle_timeout is not None:
            found[f"{route.backend}:tunnel"] = str(route.idle_timeout * 1000)
    return found


# -- runtime changes -------------------------------------------------------------------------


def plan(
    table: RouteTable,
    observed: Observed,
    paths: Paths,
    freed: Mapping[tuple[str, str], float] | None = None,
) -> list[str]:
    """The runtime API commands that make ``observed`` serve ``table``; none when it does.

    New servers are enabled before old ones are disabled, so an app being rolled over never
    has a moment without a server. A free slot already holding the address is reused;
    otherwise the one freed longest ago (``freed``: when each slot was last disabled).
    """
    freed = freed or {}
    enable: list[str] = []
    disable: list[str] = []
    for route in sorted(table.apps, key=lambda r: r.backend):
        backend = route.backend
        slots = observed.slots.get(backend, {})
        wanted = {(u.host, u.port) for u in route.upstreams}
        serving: dict[tuple[str, int], str] = {}
        for name, slot in sorted(slots.items(), key=lambda item: _slot_number(item[0])):
            address = (slot.addr, slot.port)
            if not slot.active:
                continue
            if address in wanted and address not in serving:
                serving[address] = name
                if slot.draining:
                    enable.append(f"set server {backend}/{name} state ready")
            else:
                disable.append(f"set server {backend}/{name} state maint")
        free = [name for name, slot in slots.items() if not slot.active]
        for host, port in sorted(wanted - set(serving)):
            if not free:
                raise RouterError(f"no free server slot in {backend}; reload with more")
            name = min(
                free,
                key=lambda n: (
                    (slots[n].addr, slots[n].port) != (host, port),
                    freed.get((backend, n), 0.0),
                    _slot_number(n),
                ),
            )
            free.remove(name)
            if (slots[name].addr, slots[name].port) != (host, port):
                enable.append(f"set server {backend}/{name} addr {host} port {port}")
            enable.append(f"set server {backend}/{name} state ready")
    maps = _map_commands(paths.hosts_map, table.hosts(), observed.hosts)
    maps += _map_commands(paths.apps_map, app_states(table), observed.apps)
    maps += _map_commands(paths.timeouts_map, app_timeouts(table), observed.timeouts)
    return enable + maps + disable


def _slot_number(name: str) -> int:
    digits = name.lstrip("s")
    return int(digits) if digits.isdigit() else 0


def _map_commands(
    path: Path, wanted: Mapping[str, str], observed: Mapping[str, list[str]]
) -> list[str]:
    commands = []
    for key, value in sorted(wanted.items()):
        have = observed.get(key)
        if have == [value]:
            continue
        if have is None:
            commands.append(f"add map {path} {key} {value}")
        elif len(have) == 1:
            commands.append(f"set map {path} {key} {value}")
        else:
            commands += [f"del map {path} {key}", f"add map {path} {key} {value}"]
    commands += [f"del map {path} {key}" for key in sorted(set(observed) - set(wanted))]
    return commands


def parse_servers_state(text: str) -> dict[str, dict[str, Slot]]:
    """``show servers state``: backend → slot name → :class:`Slot`."""
    found: dict[str, dict[str, Slot]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 19 or line.startswith("#"):
            continue
        backend, name, addr = fields[1], fields[3], fields[4]
        port = int(fields[18]) if fields[18].isdigit() else 0
        found.setdefault(backend, {})[name] = Slot(name, addr, port, int(fields[6]))
    return found


def parse_map(text: str) -> dict[str, list[str]]:
    """``show map``: each line is ``<ref> <key> <value>``."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 3:
            found.setdefault(fields[1], []).append(fields[2])
    return found


def parse_backends(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip() and line[0] != "#"}


@dataclass(frozen=True)
class Process:
    master: int
    worker: int | None
    reloads: int
    failed: int


def parse_proc(text: str) -> Process:
    """``show proc`` on the master socket: the master, its current worker, reload counts."""
    master = worker = None
    reloads = failed = 0
    section = "master"
    for line in text.splitlines():
        if line.startswith("# workers"):
            section = "workers"
            continue
        if line.startswith("#"):
            section = "other" if section != "master" or master is not None else section
            continue
        fields = line.split()
        if len(fields) < 3 or not fields[0].isdigit():
            continue
        if fields[1] == "master":
            master = int(fields[0])
            reloads = int(fields[2]) if fields[2].isdigit() else 0
            found = re.search(r"failed:\s*(\d+)", line)
            failed = int(found.group(1)) if found else 0
        elif section == "workers" and worker is None:
            worker = int(fields[0])
    if master is None:
        raise RouterError(f"HAProxy's master socket answered show proc oddly: {text[:200]!r}")
    return Process(master, worker, reloads, failed)


# -- the process -----------------------------------------------------------------------------


def find_binary() -> str | None:
    found = shutil.which("haproxy")
    if found:
        return found
    for candidate in ("/usr/sbin/haproxy", "/usr/local/sbin/haproxy"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _write(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically; False when it held that already."""
    with contextlib.suppress(FileNotFoundError):
        if path.read_text() == text:
            return False
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
    return True


def _ours(pid: int, paths: Paths) -> bool:
    """``pid`` is an HAProxy running our configuration (not a recycled pid)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"haproxy") and str(paths.config).encode() in argv


def master_pid(paths: Paths) -> int | None:
    """The pid of our HAProxy master, if it runs."""
    try:
        pid = int(paths.pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return pid if _ours(pid, paths) else None


def query(paths: Paths, command: str, timeout: float = SOCKET_TIMEOUT) -> str:
    """One command on the master socket, from synchronous code (tests, tools)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(paths.master_socket))
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode(errors="replace")


def stop(paths: Paths, timeout: float = 10.0) -> bool:
    """Stop our HAProxy (master and workers); False when none ran. For tests and tools."""
    pid = master_pid(paths)
    if pid is None:
        return False
    workers = []
    with contextlib.suppress(OSError, RouterError):
        process = parse_proc(query(paths, "show proc"))
        workers = [process.worker] if process.worker else []
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(_ours(p, paths) for p in (pid, *workers)):
            return True
        time.sleep(0.05)
    for p in (pid, *workers):
        with contextlib.suppress(ProcessLookupError):
            if _ours(p, paths):
                os.kill(p, signal.SIGKILL)
    return True


class HAProxy:
    """The router driver on HAProxy (see the module's docstring)."""

    def __init__(self, paths: Paths, options: Options, *, binary: str | None = None) -> None:
        self.paths = paths
        self.options = options
        self.binary = binary or find_binary()
        self._lock = asyncio.Lock()
        self._freed: dict[tuple[str, str], float] = {}
        self._challenges: dict[str, str] = {}  # ACME token → key authorization
        self._tls = tls.Certificates(paths.root)
        self.reloads = 0  # done by this driver, for tests and logs

    # -- life cycle ----------------------------------------------------------------------

    async def start(self, table: RouteTable) -> bool:
        """Adopt the HAProxy that runs, or start one serving ``table``; True if adopted."""
        if self.binary is None:
            raise RouterError(
                "haproxy is not installed: install Debian's haproxy package "
                "(scripts/quickstart does), or the router will not serve apps"
            )
        if len(str(self.paths.master_socket)) > 100:
            raise RouterError(
                f"the data directory's path is too long for HAProxy's sockets "
                f"({self.paths.master_socket}); use a shorter DOCKYARD_DATA_DIR"
            )
        self.paths.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.paths.pages.mkdir(exist_ok=True)
        for path, text in page_files(self.paths).items():
            _write(path, text)
        async with self._lock:
            if await self._alive():
                # Challenges of a control plane that died mid-order answer no order now.
                _write(self.paths.acme_map, "")
                with contextlib.suppress(RouterError):  # a configuration without the map
                    await self._worker(f"clear map {self.paths.acme_map}")
                return True
            await self._launch(table)
            return False

    async def close(self) -> None:
        """Leave HAProxy running: it serves while the control plane is away."""

    async def _alive(self) -> bool:
        if master_pid(self.paths) is None:
            return False
        try:
            process = parse_proc(await self._master("show proc"))
        except RouterError:
            return False
        return process.worker is not None

    async def _launch(self, table: RouteTable) -> None:
        """Start HAProxy as a daemon with every slot free; apply() fills them next."""
        pid = master_pid(self.paths)
        if pid is not None:
            # A master without a worker (or deaf): start afresh rather than guess.
            log.warning("HAProxy (pid %d) does not answer; restarting it", pid)
            await asyncio.to_thread(stop, self.paths)
        empty = Observed()
        config = render_config(table, layout(table, empty), self.options, self.paths)
        _write(self.paths.config, config)
        _write(self.paths.hosts_map, "")
        _write(self.paths.apps_map, "")
        _write(self.paths.timeouts_map, "")
        _write(self.paths.acme_map, map_text(self._challenges))
        # A stale state file could send an app's requests to ports that now serve another app.
        _write(self.paths.server_state, "1\n")
        self._tls.write(table)
        await self._check()
        assert self.binary is not None
        command = [
            self.binary,
            "-W",
            "-D",
            "-S",
            f"{self.paths.master_socket},mode,600",
            "-f",
            str(self.paths.config),
            "-p",
            str(self.paths.pidfile),
        ]
        with self.paths.output.open("ab") as output:
            done = await asyncio.to_thread(
                subprocess.run,
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
                timeout=START_TIMEOUT,
                check=False,
            )
        if done.returncode != 0:
            raise RouterError(f"HAProxy did not start: {self._output_tail()}")
        deadline = time.monotonic() + START_TIMEOUT
        while not await self._alive():
            if time.monotonic() > deadline:
                raise RouterError(
                    f"HAProxy did not answer within {START_TIMEOUT:g}s: {self._output_tail()}"
                )
            await asyncio.sleep(0.05)  # polling its master socket: HAProxy says nothing
        self._tls.loaded(table)
        log.info(
            "HAProxy started (pid %s), serving HTTP on port %d",
            master_pid(self.paths),
            self.options.http_port,
        )

    def _output_tail(self) -> str:
        try:
            return self.paths.output.read_text(errors="replace")[-1500:].strip()
        except OSError:
            return "(no output)"

    async def _check(self) -> None:
        assert self.binary is not None
        done = await asyncio.to_thread(
            subprocess.run,
            [self.binary, "-c", "-q", "-f", str(self.paths.config)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        if done.returncode != 0:
            raise RouterError(f"HAProxy rejects its configuration: {done.stderr.strip()[-1500:]}")

    # -- the runtime API -----------------------------------------------------------------

    async def _master(self, command: str) -> str:
        """One command on the master socket (``@1 …`` reaches the current worker)."""
        try:
            async with asyncio.timeout(SOCKET_TIMEOUT):
                reader, writer = await asyncio.open_unix_connection(str(self.paths.master_socket))
                try:
                    writer.write(command.encode() + b"\n")
                    writer.write_eof()  # the master answers, then closes
                    await writer.drain()
                    reply = await reader.read()
                finally:
                    writer.close()
                    with contextlib.suppress(OSError):
                        await writer.wait_closed()
        except (OSError, TimeoutError) as exc:
            raise RouterError(f"HAProxy's master socket did not answer {command!r}: {exc}") from exc
        return reply.decode(errors="replace")

    async def _worker(self, command: str) -> str:
        reply = await self._master(f"@1 {command}")
        if _FAILED.match(reply.lstrip()):
            raise RouterError(f"HAProxy refused {command!r}: {reply.strip()}")
        return reply

    async def observe(self) -> Observed:
        observed = Observed(
            backends=parse_backends(await self._worker("show backend")),
            slots=parse_servers_state(await self._worker("show servers state")),
        )
        for path, entries in (
            (self.paths.hosts_map, observed.hosts),
            (self.paths.apps_map, observed.apps),
            (self.paths.timeouts_map, observed.timeouts),
        ):
            reply = await self._master(f"@1 show map {path}")
            if reply.startswith("Unknown map"):
                observed.maps = False  # a configuration from before: reload
            else:
                entries.update(parse_map(reply))
        return observed

    async def worker_pid(self) -> int | None:
        return parse_proc(await self._master("show proc")).worker

    # -- the route table -----------------------------------------------------------------

    async def apply(self, table: RouteTable) -> int:
        """Make HAProxy serve ``table``; the number of runtime commands it took."""
        async with self._lock:
            if not await self._alive():
                log.warning("HAProxy is not running; starting it again")
                await self._launch(table)
            observed = await self.observe()
            slots = layout(table, observed)
            config = render_config(table, slots, self.options, self.paths)
            wanted_backends = {*slots, UNKNOWN_BACKEND, *([API_BACKEND] if table.api else [])}
            structure = (
                observed.maps
                and observed.backends == wanted_backends
                and all(len(observed.slots.get(backend, {})) == n for backend, n in slots.items())
            )
            on_disk = self.paths.config.read_text() if self.paths.config.exists() else ""
            if config != on_disk or not structure:
                await self._reload(table, config)
                observed = await self.observe()
            # The files first: a reload or restart from here on reads the same state.
            _write(self.paths.hosts_map, map_text(table.hosts()))
            _write(self.paths.apps_map, map_text(app_states(table)))
            _write(self.paths.timeouts_map, map_text(app_timeouts(table)))
            commands = plan(table, observed, self.paths, self._freed)
            for command in commands:
                await self._worker(command)
                if command.endswith("state maint"):
                    backend, _, name = command.split()[2].partition("/")
                    self._freed[(backend, name)] = time.monotonic()
            listening = tls.enabled(table, self.options.https_port)
            return len(commands) + await self._tls.apply(table, self._run, listening=listening)

    async def _run(self, command: str) -> str:
        return await self._master(f"@1 {command}")

    async def _reload(self, table: RouteTable, config: str) -> None:
        """A seamless reload onto ``config``, keeping servers' runtime state."""
        _write(self.paths.config, config)
        _write(self.paths.hosts_map, map_text(table.hosts()))
        _write(self.paths.apps_map, map_text(app_states(table)))
        _write(self.paths.timeouts_map, map_text(app_timeouts(table)))
        _write(self.paths.acme_map, map_text(self._challenges))
        self._tls.write(table)
        await self._check()
        state = await self._worker("show servers state")
        _write(self.paths.server_state, state)
        before = parse_proc(await self._master("show proc"))
        with contextlib.suppress(RouterError):
            await self._master("reload")  # the master closes the socket as it re-executes
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            with contextlib.suppress(RouterError):
                now = parse_proc(await self._master("show proc"))
                if now.failed > before.failed:
                    raise RouterError(f"HAProxy's reload failed: {self._output_tail()}")
                if now.worker is not None and now.worker != before.worker:
                    break
            if time.monotonic() > deadline:
                raise RouterError(f"HAProxy did not reload within {START_TIMEOUT:g}s")
            await asyncio.sleep(0.05)  # polling the master for the new worker
        self.reloads += 1
        self._tls.loaded(table)
        log.info("HAProxy reloaded (worker %s → %s)", before.worker, now.worker)

    async def set_challenge(self, token: str, answer: str | None) -> None:
        """Answer ``GET /.well-known/acme-challenge/<token>`` with ``answer``; None: stop."""
        if not _CHALLENGE.match(token) or not (
            answer is None or _KEY_AUTHORIZATION.match(answer)
        ):
            raise RouterError(f"not an ACME HTTP-01 token and key authorization: {token!r}")
        async with self._lock:
            if answer is None:
                self._challenges.pop(token, None)
            else:
                self._challenges[token] = answer
            # The file first: an HAProxy restarted or reloaded from here on reads the same.
            _write(self.paths.acme_map, map_text(self._challenges))
            if not await self._alive():
                return
            with contextlib.suppress(RouterError):  # not there: nothing to replace
                await self._worker(f"del map {self.paths.acme_map} {token}")
            if answer is not None:
                await self._worker(f"add map {self.paths.acme_map} {token} {answer}")

    async def upstreams(self) -> dict[str, frozenset[Upstream]]:
        """Where each backend sends requests now."""
        async with self._lock:
            observed = await self.observe()
        return {backend: observed.upstreams(backend) for backend in observed.slots}

    async def drain(self, backend: str, upstream: Upstream, timeout: float) -> int:
        """Send ``upstream`` no new requests; return once those in flight are done.

        Returns the requests still in flight when ``timeout`` ran out (0 when drained).
        """
        deadline = time.monotonic() + timeout
        async with self._lock:
            slots = (await self.observe()).slots.get(backend, {})
            names = [
                n for n, s in slots.items() if (s.addr, s.port) == (upstream.host, upstream.port)
            ]
            for name in names:
                if slots[name].active:
                    await self._worker(f"set server {backend}/{name} state maint")
                    self._freed[(backend, name)] = time.monotonic()
        while names:
            sessions = await self._sessions(backend, names)
            if sessions == 0 or time.monotonic() >= deadline:
                return sessions
            await asyncio.sleep(0.05)  # HAProxy's session counter; it sends no event
        return 0

    async def _sessions(self, backend: str, names: Iterable[str]) -> int:
        reply = await self._worker(f"show stat {backend} 4 -1")
        wanted = set(names)
        total = 0
        for line in reply.splitlines():
            fields = line.split(",")
            if len(fields) > 4 and fields[0] == backend and fields[1] in wanted:
                total += int(fields[4]) if fields[4].isdigit() else 0
        return total
