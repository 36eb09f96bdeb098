"""A process type of a release as a Docker Swarm service: the swarm driver's unit.

Each process type of each app is one service (:func:`service_name`): replicas are the
formation's quantity, limits and reservations the size's memory and process count, the
environment the release's config vars plus ``PORT`` for web and ``DYNO`` (``web.3``, from
Swarm's task slot). It is spread over the nodes, reachable only on the app's overlay network
by Docker's DNS (endpoint mode ``dnsrr``: ``tasks.<service>``, no IPVS), and updated
start-first: a new release's tasks must pass their health check before old ones stop, and
an update whose tasks fail is rolled back by Swarm. See docs/swarm.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.formation import Size

APP_LABEL = "dockyard.app"  # the app's name (dockyard.nodes shows it)
APP_ID_LABEL = "dockyard.app-id"
PROCESS_TYPE_LABEL = "dockyard.process-type"
RELEASE_LABEL = "dockyard.release"
SECOND = 1_000_000_000  # Swarm's durations are in nanoseconds
WEB_PORT = 5000  # each task has an address of its own, so every web task listens on one port
LOG_MAX_SIZE = "10m"


@dataclass(frozen=True)
class HealthCheck:
    """How Swarm tells a task is up; ``start_period`` is the boot timeout (Heroku's R10)."""

    test: Sequence[str]  # ["CMD", ...] run in the task
    interval: float = 1.0
    timeout: float = 1.0
    retries: int = 3
    start_period: float = 60.0

    def to_spec(self) -> dict[str, Any]:
        return {
            "Test": list(self.test),
            "Interval": int(self.interval * SECOND),
            "Timeout": int(self.timeout * SECOND),
            "Retries": self.retries,
            "StartPeriod": int(self.start_period * SECOND),
        }


@dataclass(frozen=True)
class ProcessService:
    """One process type of one release, as Swarm should run it."""

    app_id: str
    app_name: str
    process_type: str
    release_version: int
    image: str  # in the registry every node pulls from
    argv: Sequence[str]  # the command (the driver wraps the Procfile line)
    quantity: int
    size: Size
    network: str  # the app's overlay network
    env: Mapping[str, str] = field(default_factory=dict)  # config vars
    health_check: HealthCheck | None = None  # web: a TCP connect to PORT
    # Seconds Swarm watches updated tasks before it counts the update a success.
    monitor: float = 5.0
    grace: float = 30.0  # SIGTERM, then SIGKILL after this long

    @property
    def web(self) -> bool:
        return self.process_type == "web"


def service_name(app_name: str, process_type: str) -> str:
    """``myapp-web``: app names and process types are ``[a-z0-9-]``/``[\\w-]``, so this is a
    valid service (and DNS) name."""
    return f"{app_name}-{process_type}"


def service_spec(process: ProcessService) -> dict[str, Any]:
    """The service's spec for ``POST /services/create`` and ``/services/{id}/update``."""
    env = {**process.env, "HOME": "/app", "DYNO": process.process_type + ".{{.Task.Slot}}"}
    if process.web:
        env["PORT"] = str(WEB_PORT)
    container: dict[str, Any] = {
        "Image": process.image,
        "Command": list(process.argv),
        "Env": [f"{key}={value}" for key, value in env.items()],
        "Labels": {APP_LABEL: process.app_name, RELEASE_LABEL: str(process.release_version)},
        "Init": True,  # docker-init passes SIGTERM on, and reaps
        "StopSignal": "SIGTERM",
        "StopGracePeriod": int(process.grace * SECOND),
        "ReadOnly": False,
    }
    if process.health_check is not None:
        container["HealthCheck"] = process.health_check.to_spec()
    update_order = {
        "Parallelism": 1,
        "Delay": 0,
        "Monitor": int(process.monitor * SECOND),
        "MaxFailureRatio": 0,
        "Order": "start-first",
    }
    return {
        "Name": service_name(process.app_name, process.process_type),
        "Labels": {
            APP_LABEL: process.app_name,
            APP_ID_LABEL: process.app_id,
            PROCESS_TYPE_LABEL: process.process_type,
            RELEASE_LABEL: str(process.release_version),
        },
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": {
                "Limits": {
                    "MemoryBytes": process.size.memory_bytes,
                    "Pids": process.size.max_processes,
                },
                # Swarm places a task only on a node with this much memory not yet reserved;
                # a scale no node fits stays pending, with Swarm's reason on the task.
                "Reservations": {"MemoryBytes": process.size.memory_bytes},
            },
            "RestartPolicy": {"Condition": "any", "Delay": SECOND, "MaxAttempts": 0},
            "Placement": {"Preferences": [{"Spread": {"SpreadDescriptor": "node.id"}}]},
            "Networks": [{"Target": process.network}],
            "LogDriver": {"Name": "json-file", "Options": {"max-size": LOG_MAX_SIZE}},
        },
        "Mode": {"Replicated": {"Replicas": process.quantity}},
        "UpdateConfig": {**update_order, "FailureAction": "rollback"},
        "RollbackConfig": {**update_order, "FailureAction": "pause"},
        "EndpointSpec": {"Mode": "dnsrr"},
    }
