"""A real two-node Docker Swarm on this machine, for the swarm tests (docs/swarm.md).

The manager is the host's Docker engine (``/var/run/docker.sock``, started by
``scripts/lib/install.sh``). The worker is a second ``dockerd`` that the fixture starts in a
network namespace of its own (and a UTS namespace, so it has a hostname of its own), with
its own data root, exec root, pid file and socket under a temp dir. The two are linked by a
veth pair with private addresses (:data:`MANAGER_ADDR` and :data:`WORKER_ADDR`), and every
address Swarm hands out comes from :data:`ADDRESS_POOL`: Docker's traffic stays on networks
the fixture makes. The routing mesh's ``ingress`` network is removed at once (no IPVS here).

Images are never pulled from outside: a tiny image is imported from a tarball of this
machine's own binaries (``dash``, ``sleep``, ``getent``, ``socat`` and the libraries they
link) and pushed to a registry (Debian's ``docker-registry``) that the fixture runs on the
manager's cluster address over TLS, with its certificate in ``/etc/docker/certs.d`` so both
engines trust it without a restart. Everything is undone at the end: services, the swarm
(both engines leave it), the second daemon, the registry, the certificate, the namespace.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import fcntl
import io
import ipaddress
import json
import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

MANAGER_ADDR = "10.213.0.1"
WORKER_ADDR = "10.213.0.2"
PREFIX = 24
ADDRESS_POOL = "10.214.0.0/16"  # overlay networks' subnets, /24 each
GWBRIDGE_SUBNETS = {"manager": "10.215.0.0/24", "worker": "10.215.1.0/24"}
WORKER_HOSTNAME = "dyswarm-worker"
HOST_SOCKET = Path("/var/run/docker.sock")
CERTS_D = Path("/etc/docker/certs.d")
LOCK = Path("/run/dockyard-swarm-tests.lock")
TEST_LABEL = "dockyard.swarm-test"
ROOT_PREFIX = "dyswarm-test-"  # the temp dir of a run: /tmp/dyswarm-test-XXXXXXXX
API = "v1.41"
# What the test image holds: a shell, a sleeper, DNS lookups, a TCP client and server, and
# HAProxy (the router's).
IMAGE_BINARIES = (
    "/bin/dash",
    "/bin/sleep",
    "/bin/hostname",
    "/usr/bin/getent",
    "/usr/bin/socat",
    "/usr/sbin/haproxy",
)
# An HTTP answer naming the container (socat ... EXEC:/bin/respond serves it).
RESPOND = (
    "#!/bin/sh\n"
    "printf 'HTTP/1.0 200 OK\\r\\nContent-Type: text/plain\\r\\n\\r\\n%s\\n' \"$(/bin/hostname)\"\n"
)


class Unavailable(Exception):
    """The swarm cannot be made on this machine; the message says why (tests skip)."""


def wait_for(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``condition`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s")
        time.sleep(0.1)


class Engine:
    """A Docker engine's API over its unix socket (sync, for tests)."""

    def __init__(self, socket_path: Path) -> None:
        self.socket = socket_path
        self.http = httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url=f"http://docker/{API}",
            timeout=httpx.Timeout(60.0, connect=5.0),
        )

    def call(
        self, method: str, path: str, *, ok: tuple[int, ...] = (), **kwargs: Any
    ) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if response.status_code >= 400 and response.status_code not in ok:
            raise AssertionError(
                f"{method} {path} on {self.socket}: {response.status_code} {response.text}"
            )
        return response

    def get(self, path: str, **params: str) -> Any:
        return self.call("GET", path, params=params).json()

    def answers(self) -> bool:
        # A plain connect first: httpx leaks the socket of a refused unix connection.
        with socket.socket(socket.AF_UNIX) as probe:
            try:
                probe.connect(str(self.socket))
            except OSError:
                return False
        try:
            return self.http.get("/version", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def swarm_state(self) -> str:
        return str(self.get("/info")["Swarm"]["LocalNodeState"])

    def close(self) -> None:
        self.http.close()


def _run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(command)} exited {done.returncode}: {done.stderr}")


def _libraries(binary: str) -> list[str]:
    done = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    return [part for part in done.stdout.split() if part.startswith("/")]


def image_tarball(path: Path) -> None:
    """A root filesystem of this machine's own binaries and their libraries, as a tar."""
    with tarfile.open(path, "w") as tar:
        added: set[str] = set()
        for binary in IMAGE_BINARIES:
            for source in [binary, *_libraries(binary)]:
                if source not in added:
                    added.add(source)
                    tar.add(os.path.realpath(source), arcname=source.lstrip("/"))
        tar.add(os.path.realpath("/bin/dash"), arcname="bin/sh")
        script = tarfile.TarInfo("bin/respond")
        script.size, script.mode = len(RESPOND), 0o755
        tar.addfile(script, io.BytesIO(RESPOND.encode()))
        for directory in ("tmp", "etc"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the registry's address (a day long)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MANAGER_ADDR)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(MANAGER_ADDR))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "registry.crt", directory / "registry.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class Swarm:
    """The running two-node swarm."""

    manager: Engine
    worker: Engine
    manager_id: str
    worker_id: str
    registry: str  # host:port
    image: str  # the test image in the registry
    namespace: str
    root: Path
    timings: dict[str, float] = field(default_factory=dict)

    def tasks(self, service: str) -> list[dict[str, Any]]:
        """The service's tasks that should run, with their node and state."""
        filters = json.dumps({"service": [service], "desired-state": ["running"]})
        found: list[dict[str, Any]] = self.manager.get("/tasks", filters=filters)
        return found

    def running_on(self, service: str) -> dict[str, int]:
        """How many of the service's tasks run on each node (by node ID)."""
        counts: dict[str, int] = {}
        for task in self.tasks(service):
            if task["Status"]["State"] == "running":
                counts[task["NodeID"]] = counts.get(task["NodeID"], 0) + 1
        return counts

    def create_service(self, name: str, spec: dict[str, Any]) -> str:
        body = {"Name": name, "Labels": {TEST_LABEL: "1"}, **spec}
        reply = self.manager.call("POST", "/services/create", json=body).json()
        return str(reply["ID"])

    def remove_service(self, name: str) -> None:
        service = self.manager.get(f"/services/{name}")["ID"]
        self.manager.call("DELETE", f"/services/{name}")
        filters = json.dumps({"desired-state": ["running"]})

        def gone() -> bool:
            tasks = self.manager.get("/tasks", filters=filters)
            return not [t for t in tasks if t["ServiceID"] == service]

        wait_for(gone, 30, f"{name}'s tasks gone")

    def create_network(self, name: str) -> str:
        body = {
            "Name": name,
            "Driver": "overlay",
            "CheckDuplicate": True,
            "Labels": {TEST_LABEL: "1"},
        }
        return str(self.manager.call("POST", "/networks/create", json=body).json()["Id"])


@contextmanager
def two_node_swarm() -> Iterator[Swarm]:
    """Make the swarm; undo all of it on the way out (whatever happened in between)."""
    problem = _precondition()
    if problem:
        raise Unavailable(problem)
    with ExitStack() as undo:
        lock = undo.enter_context(LOCK.open("w"))
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise Unavailable("another run of the swarm tests holds " + str(LOCK)) from exc
        manager = Engine(HOST_SOCKET)
        undo.callback(manager.close)
        _clear_leftovers(manager)
        addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True)
        if f" {MANAGER_ADDR}/" in addresses.stdout:
            raise Unavailable(f"{MANAGER_ADDR} is in use on this machine")
        if manager.swarm_state() != "inactive":
            raise Unavailable(
                "the host's Docker engine is in a swarm already; these tests make their own "
                "and would have to leave yours"
            )
        timings: dict[str, float] = {}
        started = time.monotonic()
        root = Path(tempfile.mkdtemp(prefix=ROOT_PREFIX, dir="/tmp"))  # short: socket paths
        undo.callback(_remove_tree, root)
        tag = secrets.token_hex(3)
        namespace = f"dyswarm-{tag}"
        _network(undo, namespace, f"dysw{tag}h", f"dysw{tag}w")
        worker = _worker_daemon(undo, namespace, root / "worker")
        timings["worker daemon up"] = time.monotonic() - started

        pushed: list[str] = []  # removed once the swarm (and its containers) is gone
        undo.callback(_remove_images, manager, pushed)
        _gwbridge(undo, manager, "manager")
        _gwbridge(undo, worker, "worker")
        manager_id, worker_id = _form(undo, manager, worker)
        timings["swarm formed"] = time.monotonic() - started

        registry = _registry(undo, root / "registry")
        image = _push_image(manager, registry, root)
        pushed.append(image)
        timings["image in the registry"] = time.monotonic() - started
        yield Swarm(
            manager, worker, manager_id, worker_id, registry, image, namespace, root, timings
        )


def _precondition() -> str | None:
    if os.geteuid() != 0:
        return "making network namespaces and a second dockerd needs root"
    for tool in ("ip", "nsenter", "unshare", "dockerd", "docker-registry", "ldd", *IMAGE_BINARIES):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/lib/install.sh: ensure_swarm)"
    host = Engine(HOST_SOCKET)
    try:
        if not host.answers():
            return f"no Docker engine answers on {HOST_SOCKET}"
    finally:
        host.close()
    return None


def _clear_leftovers(manager: Engine) -> None:
    """Undo what a run that was killed (no clean-up) left: ours by its names and address.

    Called with the lock held, so no other run is using them.
    """
    info = manager.get("/info")["Swarm"]
    if info["LocalNodeState"] != "inactive" and info.get("NodeAddr") == MANAGER_ADDR:
        manager.call("POST", "/swarm/leave", params={"force": "1"}, ok=(503,))
    for root in Path("/tmp").glob(ROOT_PREFIX + "*"):
        _stop_processes_under(root)
        _remove_tree(root)
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    for line in namespaces.stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("dyswarm-"):
            subprocess.run(["ip", "netns", "del", name], check=False)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True)
    for line in links.stdout.splitlines():
        name = line.split(":")[1].strip().partition("@")[0] if ":" in line else ""
        if name.startswith("dysw") and name.endswith("h"):
            subprocess.run(["ip", "link", "del", name], check=False)
    for trust in CERTS_D.glob(f"{MANAGER_ADDR}:*"):
        shutil.rmtree(trust, ignore_errors=True)
    for image in manager.get("/images/json"):
        for tag in image.get("RepoTags") or []:
            if tag.startswith(f"{MANAGER_ADDR}:"):
                manager.call("DELETE", f"/images/{tag}", params={"force": "1"}, ok=(404, 409))


def _network(undo: ExitStack, namespace: str, host_end: str, worker_end: str) -> None:
    """The worker's network namespace and the veth pair between it and the host."""
    _run("ip", "netns", "add", namespace)
    undo.callback(subprocess.run, ["ip", "netns", "del", namespace], check=False)
    _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", worker_end)
    # Deleting one end deletes both (and the pair goes with the namespace anyway).
    undo.callback(subprocess.run, ["ip", "link", "del", host_end], check=False)
    _run("ip", "link", "set", worker_end, "netns", namespace)
    _run("ip", "addr", "add", f"{MANAGER_ADDR}/{PREFIX}", "dev", host_end)
    _run("ip", "link", "set", host_end, "up")
    _run("ip", "-n", namespace, "addr", "add", f"{WORKER_ADDR}/{PREFIX}", "dev", worker_end)
    _run("ip", "-n", namespace, "link", "set", worker_end, "up")
    _run("ip", "-n", namespace, "link", "set", "lo", "up")


def _worker_daemon(
    undo: ExitStack, namespace: str, root: Path, hostname: str = WORKER_HOSTNAME
) -> Engine:
    """A second dockerd in the namespace: its own data, exec root, pid file and socket.

    Only the network and UTS namespaces are its own: ``ip netns exec`` would also remount
    /sys, hiding the cgroup mounts dockerd needs ("Devices cgroup isn't mounted").
    """
    root.mkdir(parents=True)
    config = root / "daemon.json"
    config.write_text(json.dumps({"log-driver": "json-file"}))
    socket_path = root / "docker.sock"
    log = (root / "dockerd.log").open("wb")
    undo.callback(log.close)
    command = [
        "unshare", "--uts", "--",
        "sh", "-c", 'hostname "$0" && exec "$@"', hostname,
        "nsenter", f"--net=/run/netns/{namespace}", "--",
        "dockerd",
        "--config-file", str(config),
        "--data-root", str(root / "data"),
        "--exec-root", str(root / "exec"),
        "--pidfile", str(root / "docker.pid"),
        "-H", f"unix://{socket_path}",
        "--bridge=none", "--iptables=false", "--ip-masq=false", "--userland-proxy=false",
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    undo.callback(_stop_daemon, process, root)
    (root / "dockerd.launcher").write_text(str(process.pid))
    engine = Engine(socket_path)
    undo.callback(engine.close)

    def up() -> bool:
        if process.poll() is not None:
            tail = (root / "dockerd.log").read_text(errors="replace")[-2000:]
            raise Unavailable(f"the second dockerd exited {process.returncode}:\n{tail}")
        return engine.answers()

    wait_for(up, 60, "the second dockerd answering")
    return engine


def _stop_daemon(process: subprocess.Popen[bytes], root: Path) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    # What it left mounted (it unmounts on a clean stop; not after a SIGKILL).
    for mount in reversed(_mounts_under(root)):
        subprocess.run(["umount", "-l", mount], check=False)


def _mounts_under(root: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4]
        if point.startswith(str(root)):
            found.append(point)
    return found


def _stop_processes_under(root: Path) -> None:
    """SIGTERM, then SIGKILL, every process whose command line names ``root``: a killed
    run's second dockerd, its containerd and shims, its registry."""
    mine = str(root).encode()
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if mine in cmdline.read_bytes():
                found.append(int(cmdline.parent.name))
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in found:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and any(Path(f"/proc/{p}").exists() for p in found):
            time.sleep(0.1)


def _remove_if_empty(directory: Path) -> None:
    with contextlib.suppress(OSError):
        directory.rmdir()


def _remove_tree(root: Path) -> None:
    for mount in reversed(_mounts_under(root)):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(root, ignore_errors=True)


def _gwbridge(undo: ExitStack, engine: Engine, which: str) -> None:
    """docker_gwbridge on a subnet of ours, made before Swarm makes it on one of its own."""
    found = engine.call("GET", "/networks/docker_gwbridge", ok=(404,))
    if found.status_code == 200:
        return  # the engine's own, from an earlier swarm: left as it is
    body = {
        "Name": "docker_gwbridge",
        "Driver": "bridge",
        "IPAM": {"Config": [{"Subnet": GWBRIDGE_SUBNETS[which]}]},
        "Options": {
            "com.docker.network.bridge.name": "docker_gwbridge",
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.bridge.enable_ip_masquerade": "false",
        },
    }
    engine.call("POST", "/networks/create", json=body)
    undo.callback(engine.call, "DELETE", "/networks/docker_gwbridge", ok=(404, 409, 500))


def _form(undo: ExitStack, manager: Engine, worker: Engine) -> tuple[str, str]:
    """swarm init on the host's engine, join from the worker; both nodes ready."""
    manager.call(
        "POST",
        "/swarm/init",
        json={
            "ListenAddr": f"{MANAGER_ADDR}:2377",
            "AdvertiseAddr": f"{MANAGER_ADDR}:2377",
            "DataPathAddr": MANAGER_ADDR,
            "DefaultAddrPool": [ADDRESS_POOL],
            "SubnetSize": 24,
        },
    )
    undo.callback(manager.call, "POST", "/swarm/leave", params={"force": "1"}, ok=(503,))
    undo.callback(_remove_test_services, manager)
    # No routing mesh: its ingress network needs IPVS, and Dockyard never publishes ports.
    manager.call("DELETE", "/networks/ingress", ok=(404,))
    token = manager.get("/swarm")["JoinTokens"]["Worker"]
    worker.call(
        "POST",
        "/swarm/join",
        json={
            "ListenAddr": f"{WORKER_ADDR}:2377",
            "AdvertiseAddr": f"{WORKER_ADDR}:2377",
            "DataPathAddr": WORKER_ADDR,
            "RemoteAddrs": [f"{MANAGER_ADDR}:2377"],
            "JoinToken": token,
        },
    )
    undo.callback(worker.call, "POST", "/swarm/leave", params={"force": "1"}, ok=(503,))
    worker_id = str(worker.get("/info")["Swarm"]["NodeID"])
    manager_id = str(manager.get("/info")["Swarm"]["NodeID"])

    def ready() -> bool:
        nodes = manager.get("/nodes")
        return len(nodes) == 2 and all(n["Status"]["State"] == "ready" for n in nodes)

    wait_for(ready, 60, "both nodes ready")
    return manager_id, worker_id


def _remove_test_services(manager: Engine) -> None:
    filters = json.dumps({"label": [TEST_LABEL]})
    for service in manager.get("/services", filters=filters):
        manager.call("DELETE", f"/services/{service['ID']}", ok=(404,))


def _registry(undo: ExitStack, root: Path) -> str:
    """Debian's docker-registry on the manager's cluster address, over TLS."""
    root.mkdir(parents=True)
    certificate, key = _certificate(root)
    port = _free_port(MANAGER_ADDR)
    address = f"{MANAGER_ADDR}:{port}"
    config = root / "config.yml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "version": 0.1,
                "log": {"level": "warn"},
                "storage": {"filesystem": {"rootdirectory": str(root / "data")}},
                "http": {
                    "addr": address,
                    "tls": {"certificate": str(certificate), "key": str(key)},
                },
            }
        )
    )
    if not CERTS_D.exists():
        CERTS_D.mkdir(parents=True)
        undo.callback(_remove_if_empty, CERTS_D)
    trust = CERTS_D / address
    trust.mkdir()
    undo.callback(shutil.rmtree, trust, ignore_errors=True)
    shutil.copyfile(certificate, trust / "ca.crt")
    log = (root / "registry.log").open("wb")
    undo.callback(log.close)
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=log, stderr=subprocess.STDOUT
    )

    def stop() -> None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    undo.callback(stop)

    trusted = ssl.create_default_context(cafile=str(certificate))

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"docker-registry exited {process.returncode}")
        try:
            reply = httpx.get(f"https://{address}/v2/", verify=trusted, timeout=2)
        except httpx.TransportError:
            return False
        return reply.status_code == 200

    wait_for(up, 30, "the registry answering")
    return address


def _remove_images(manager: Engine, images: list[str]) -> None:
    for image in images:
        manager.call("DELETE", f"/images/{image}", params={"force": "1"}, ok=(404, 409))


def _push_image(manager: Engine, registry: str, root: Path) -> str:
    """The test image: imported from a tarball, pushed to the registry."""
    tarball = root / "rootfs.tar"
    image_tarball(tarball)
    repository = f"{registry}/dockyard-swarm-test/tiny"
    with tarball.open("rb") as content:
        manager.call(
            "POST",
            "/images/create",
            params={"fromSrc": "-", "repo": repository, "tag": "1"},
            content=content.read(),
            headers={"Content-Type": "application/x-tar"},
        )
    auth = base64.urlsafe_b64encode(b"{}").decode()
    reply = manager.call(
        "POST",
        f"/images/{repository}/push",
        params={"tag": "1"},
        headers={"X-Registry-Auth": auth},
    )
    for line in reply.text.splitlines():
        if line.strip() and "error" in json.loads(line):
            raise AssertionError(f"pushing {repository}:1 failed: {line}")
    return f"{repository}:1"


LOST_ADDR = "10.216.0.2"  # a third node's, on a network of its own (see extra_node)
LOST_HOST_END = "10.216.0.1"
LOST_HOSTNAME = "dyswarm-lost"


@contextmanager
def extra_node(swarm: Swarm) -> Iterator[tuple[str, Callable[[], None]]]:
    """A third node joined to ``swarm``: its node ID, and a function that kills its dockerd
    at once (SIGKILL: the node goes away without a word). It is removed from the swarm, and
    everything made for it undone, on the way out."""
    with ExitStack() as undo:
        tag = secrets.token_hex(3)
        namespace, host_end, node_end = f"dyswarm-{tag}", f"dysw{tag}h", f"dysw{tag}w"
        _run("ip", "netns", "add", namespace)
        undo.callback(subprocess.run, ["ip", "netns", "del", namespace], check=False)
        # After a SIGKILL of its dockerd, what ran there (containers) goes with it.
        undo.callback(_kill_namespace, namespace)
        _run("ip", "link", "add", host_end, "type", "veth", "peer", "name", node_end)
        undo.callback(subprocess.run, ["ip", "link", "del", host_end], check=False)
        _run("ip", "link", "set", node_end, "netns", namespace)
        _run("ip", "addr", "add", f"{LOST_HOST_END}/{PREFIX}", "dev", host_end)
        _run("ip", "link", "set", host_end, "up")
        _run("ip", "-n", namespace, "addr", "add", f"{LOST_ADDR}/{PREFIX}", "dev", node_end)
        _run("ip", "-n", namespace, "link", "set", node_end, "up")
        _run("ip", "-n", namespace, "link", "set", "lo", "up")
        # The manager (and its registry) is on another subnet: through the host.
        _run("ip", "-n", namespace, "route", "add", "default", "via", LOST_HOST_END)
        root = swarm.root / f"lost-{tag}"
        undo.callback(_stop_processes_under, root)  # its containerd and shims, after a kill
        engine = _worker_daemon(undo, namespace, root, LOST_HOSTNAME)
        token = swarm.manager.get("/swarm")["JoinTokens"]["Worker"]
        engine.call(
            "POST",
            "/swarm/join",
            json={
                "ListenAddr": f"{LOST_ADDR}:2377",
                "AdvertiseAddr": f"{LOST_ADDR}:2377",
                "DataPathAddr": LOST_ADDR,
                "RemoteAddrs": [f"{MANAGER_ADDR}:2377"],
                "JoinToken": token,
            },
        )
        node_id = str(engine.get("/info")["Swarm"]["NodeID"])
        undo.callback(
            swarm.manager.call, "DELETE", f"/nodes/{node_id}", params={"force": "1"}, ok=(404,)
        )

        def ready() -> bool:
            node = swarm.manager.get(f"/nodes/{node_id}")
            return bool(node["Status"]["State"] == "ready")

        wait_for(ready, 60, "the third node ready")

        def kill() -> None:
            launcher = int((root / "dockerd.launcher").read_text())
            daemon = int((root / "docker.pid").read_text())
            for pid in (daemon, launcher):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

        yield node_id, kill


def _kill_namespace(namespace: str) -> None:
    """SIGKILL every process in the network namespace."""
    found = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True)
    for pid in found.stdout.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
