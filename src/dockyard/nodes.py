"""The nodes dynos run on: what each is, what it can hold and what runs there.

With ``DOCKYARD_RUNTIME=swarm`` the nodes are the Docker Swarm's, read from the manager's
Docker engine (``DOCKYARD_DOCKER_SOCKET``): each node's role, state, availability, CPUs and
memory, and the tasks Swarm keeps running on it. A node can be drained (Swarm moves its tasks
to other nodes) and made active again. With the ``process`` and ``docker`` runtimes there is
one node, this server, with the capacity dynos are checked against
(``DOCKYARD_NODE_MEMORY_MB``, the CPU count); it cannot be drained.

Errors: :class:`NodesUnavailable` (503) when the engine cannot answer or is not a swarm
manager; ``NotFound`` and ``Conflict`` for a node reference that matches none or several;
``Conflict`` for a drain without a swarm.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

from dockyard import formation
from dockyard.errors import Conflict, DockyardError, NotFound
from dockyard.runtime import Dyno
from dockyard.runtime.docker_engine import Engine, EngineError
from dockyard.runtime.swarm_services import APP_LABEL, DYNO_NAME_LABEL, PROCESS_TYPE_LABEL
from dockyard.settings import Settings

LOCAL_ID = "local"
Availability = Literal["active", "drain"]


class NodesUnavailable(DockyardError):
    """The Docker engine did not answer, or is not a manager of a swarm."""

    status = 503
    id = "unavailable"


@dataclass(frozen=True)
class Task:
    """One dyno (a Swarm task or a local dyno) on a node: ``myapp web.2``."""

    app: str | None  # None for a Swarm service that is not one of Dockyard's
    name: str  # web.2, or service.slot for other services
    state: str  # running, starting, preparing, ...


@dataclass(frozen=True)
class Node:
    id: str
    hostname: str
    role: str  # manager, worker, or local (the one node of the process and docker runtimes)
    leader: bool
    state: str  # ready, down, disconnected, unknown
    availability: str  # active, pause, drain
    address: str | None
    cpus: float
    memory_mb: int
    engine_version: str | None
    tasks: Sequence[Task] = field(default_factory=tuple)
    message: str | None = None  # why a node is down, as Swarm says

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hostname": self.hostname,
            "role": self.role,
            "leader": self.leader,
            "state": self.state,
            "availability": self.availability,
            "address": self.address,
            "capacity": {"cpus": self.cpus, "memory_mb": self.memory_mb},
            "engine_version": self.engine_version,
            "message": self.message,
            "dynos": [
                {"app": task.app, "name": task.name, "state": task.state} for task in self.tasks
            ],
        }


def local_node(settings: Settings, dynos: Iterable[Dyno]) -> Node:
    """This server as the one node of the ``process`` and ``docker`` runtimes."""
    tasks = sorted(
        (Task(dyno.app_name, dyno.name, "running") for dyno in dynos),
        key=lambda task: (task.app or "", task.name),
    )
    return Node(
        id=LOCAL_ID,
        hostname=socket.gethostname(),
        role="local",
        leader=True,
        state="ready",
        availability="active",
        address=None,
        cpus=float(os.cpu_count() or 1),
        memory_mb=formation.node_memory_mb(settings.node_memory_mb),
        engine_version=None,
        tasks=tuple(tasks),
    )


def _unavailable(exc: EngineError) -> NodesUnavailable:
    return NodesUnavailable(
        f"the swarm's nodes are out of reach: {exc.message} (DOCKYARD_RUNTIME=swarm needs "
        "this server's Docker engine to be a manager of the swarm; see docs/swarm.md)"
    )


class SwarmNodes:
    """The nodes of the swarm whose manager is ``engine``."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    async def _get(self, path: str, params: Mapping[str, str] | None = None) -> Any:
        try:
            return (await self.engine.request("GET", path, params=params, timeout=10.0)).json()
        except EngineError as exc:
            raise _unavailable(exc) from exc

    async def list(self) -> list[Node]:
        """Every node, managers first, with the tasks that should run there now."""
        nodes = await self._get("/nodes")
        services = await self._get("/services")
        tasks = await self._get("/tasks", {"filters": json.dumps({"desired-state": ["running"]})})
        names = {str(s["ID"]): _service_name(s) for s in services}
        by_node: dict[str, list[Task]] = {}
        for task in tasks:
            service = names.get(str(task.get("ServiceID")), (None, str(task.get("ServiceID"))))
            app, base = service
            slot = task.get("Slot")
            name = f"{base}.{slot}" if slot and "." not in base else base
            state = str((task.get("Status") or {}).get("State", "unknown"))
            by_node.setdefault(str(task.get("NodeID")), []).append(Task(app, name, state))
        shaped = [_node(raw, by_node.get(str(raw["ID"]), [])) for raw in nodes]
        return sorted(shaped, key=lambda n: (n.role != "manager", n.hostname, n.id))

    async def find(self, reference: str) -> dict[str, Any]:
        """The node ``reference`` names: its ID, a unique ID prefix, or its hostname."""
        nodes = await self._get("/nodes")
        exact = [n for n in nodes if n["ID"] == reference]
        if exact:
            return dict(exact[0])
        found = [
            n
            for n in nodes
            if (reference and str(n["ID"]).startswith(reference)) or _hostname(n) == reference
        ]
        if not found:
            known = ", ".join(f"{_hostname(n)} ({str(n['ID'])[:12]})" for n in nodes)
            raise NotFound(f"no node {reference!r} in the swarm; its nodes are {known}")
        if len(found) > 1:
            ids = ", ".join(str(n["ID"])[:12] for n in found)
            raise Conflict(f"{reference!r} names {len(found)} nodes ({ids}); give a node ID")
        return dict(found[0])

    async def set_availability(self, reference: str, availability: Availability) -> Node:
        """Drain a node (Swarm moves its tasks elsewhere) or make it active again."""
        raw = await self.find(reference)
        node_id = str(raw["ID"])
        spec = dict(raw.get("Spec") or {})
        spec["Availability"] = availability
        version = str((raw.get("Version") or {}).get("Index", 0))
        try:
            await self.engine.request(
                "POST",
                f"/nodes/{quote(node_id, safe='')}/update",
                params={"version": version},
                body=spec,
                timeout=10.0,
            )
        except EngineError as exc:
            # Swarm refuses an update of a node changed meanwhile ("out of sequence"): retry.
            raise NodesUnavailable(
                f"Swarm did not set {_hostname(raw)} ({node_id[:12]}) to {availability}: "
                f"{exc.message}; try again"
            ) from exc
        for node in await self.list():
            if node.id == node_id:
                return node
        raise NotFound(f"node {node_id} left the swarm meanwhile")


def _hostname(raw: Mapping[str, Any]) -> str:
    return str((raw.get("Description") or {}).get("Hostname", ""))


def _service_name(raw: Mapping[str, Any]) -> tuple[str | None, str]:
    spec = raw.get("Spec") or {}
    labels = spec.get("Labels") or {}
    app, kind = labels.get(APP_LABEL), labels.get(PROCESS_TYPE_LABEL)
    if app and labels.get(DYNO_NAME_LABEL):
        return str(app), str(labels[DYNO_NAME_LABEL])  # a dyno's service: web.3
    if app and kind:
        return str(app), str(kind)  # a process type's service: its tasks' slots number them
    return None, str(spec.get("Name", raw.get("ID")))


def _node(raw: Mapping[str, Any], tasks: Sequence[Task]) -> Node:
    spec = raw.get("Spec") or {}
    description = raw.get("Description") or {}
    resources = description.get("Resources") or {}
    status = raw.get("Status") or {}
    manager = raw.get("ManagerStatus") or {}
    return Node(
        id=str(raw["ID"]),
        hostname=_hostname(raw),
        role=str(spec.get("Role", "worker")),
        leader=bool(manager.get("Leader", False)),
        state=str(status.get("State", "unknown")),
        availability=str(spec.get("Availability", "active")),
        address=str(status["Addr"]) if status.get("Addr") else None,
        cpus=int(resources.get("NanoCPUs", 0)) / 1e9,
        memory_mb=int(resources.get("MemoryBytes", 0)) // (1024 * 1024),
        engine_version=(description.get("Engine") or {}).get("EngineVersion"),
        tasks=tuple(sorted(tasks, key=lambda t: (t.app or "", t.name))),
        message=str(status["Message"]) if status.get("Message") else None,
    )


async def listing(settings: Settings, dynos: Iterable[Dyno]) -> list[Node]:
    """The nodes of ``settings``' runtime: the swarm's, or this server alone."""
    if settings.runtime != "swarm":
        return [local_node(settings, dynos)]
    async with Engine(settings.docker_socket) as engine:
        return await SwarmNodes(engine).list()


async def set_availability(settings: Settings, reference: str, availability: Availability) -> Node:
    """``nodes:drain`` and ``nodes:activate``: for the swarm runtime only."""
    if settings.runtime != "swarm":
        raise Conflict(
            f"this server runs dynos with the {settings.runtime} runtime, on one node: itself; "
            "nodes can be drained with DOCKYARD_RUNTIME=swarm (see docs/swarm.md)"
        )
    async with Engine(settings.docker_socket) as engine:
        return await SwarmNodes(engine).set_availability(reference, availability)
