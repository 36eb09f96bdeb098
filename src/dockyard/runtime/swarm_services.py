"""A dyno as a Docker Swarm service: the swarm driver's unit (see docs/swarm.md).

Each dyno is a service of one replica (:func:`dyno_service`), so the reconciler treats it
exactly as it treats a process or a container: it starts ``web.3`` of a release, checks it
boots, adds it to the router, and drains and stops it when a new release is up (Heroku's
zero-downtime rules, R10, crash back-off, one writer per app). Swarm's part is placement:
it puts each dyno on a node that has the size's memory unreserved, moves dynos off a node
that drains, and pulls the release's image there from the platform's registry.

The task runs on its node's host network, as the other drivers' dynos do: a web dyno
listens on its ``PORT`` on that node's address, where the router reaches it. No port is
published and no virtual IP is made, so nothing goes through Swarm's IPVS routing mesh.
Swarm never restarts a dyno (restart condition ``none``): a crash is the reconciler's, with
its back-off, as on one machine.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dockyard.formation import Size

APP_LABEL = "dockyard.app"  # the app's name (dockyard.nodes shows it)
APP_ID_LABEL = "dockyard.app-id"
PROCESS_TYPE_LABEL = "dockyard.process-type"
DYNO_NAME_LABEL = "dockyard.dyno-name"  # web.3 (dockyard.nodes shows it)
RELEASE_LABEL = "dockyard.release"
SECOND = 1_000_000_000  # Swarm's durations are in nanoseconds
LOG_MAX_SIZE = "10m"


@dataclass(frozen=True)
class Mount:
    """A read-only directory of the node (an interpreter a slug's virtualenv links to)."""

    source: str
    target: str


@dataclass(frozen=True)
class DynoService:
    """One dyno of one release, as Swarm should run it."""

    name: str  # the service's name
    app_id: str
    app_name: str
    dyno_name: str  # web.3
    process_type: str
    release_version: int
    image: str  # in the registry every node pulls from
    argv: Sequence[str]
    size: Size
    network: str  # the ID of the nodes' host network
    env: Mapping[str, str] = field(default_factory=dict)  # the whole environment
    user: str | None = None  # uid:gid
    workdir: str | None = None
    mounts: Sequence[Mount] = ()
    labels: Mapping[str, str] = field(default_factory=dict)  # the platform's, on the service
    grace: float = 30.0  # SIGTERM, then SIGKILL after this long


def service_name(app_name: str, dyno_name: str, unique: str) -> str:
    """``myapp-web-3-1a2b3c4d5e6f``: app names are ``[a-z0-9-]`` and process types
    ``[\\w-]``; within Swarm's 63 characters and unique per dyno."""
    readable = f"{app_name}-{dyno_name.replace('.', '-')}".replace("_", "-")
    return f"{readable[: 62 - len(unique)]}-{unique}"


def dyno_service(dyno: DynoService) -> dict[str, Any]:
    """The service's spec for ``POST /services/create``."""
    container: dict[str, Any] = {
        "Image": dyno.image,
        "Command": list(dyno.argv),
        "Env": [f"{key}={value}" for key, value in dyno.env.items()],
        "Labels": {APP_LABEL: dyno.app_name, DYNO_NAME_LABEL: dyno.dyno_name},
        "Init": True,  # docker-init passes SIGTERM on, and reaps
        "StopSignal": "SIGTERM",
        "StopGracePeriod": int(dyno.grace * SECOND),
        "CapabilityDrop": ["ALL"],
        "Mounts": [
            {
                "Type": "tmpfs",
                "Target": "/tmp",  # noqa: S108 - the dyno's own tmpfs
                "TmpfsOptions": {"SizeBytes": dyno.size.memory_bytes // 2, "Mode": 0o1777},
            },
            *(
                {"Type": "bind", "Source": m.source, "Target": m.target, "ReadOnly": True}
                for m in dyno.mounts
            ),
        ],
    }
    if dyno.user is not None:
        container["User"] = dyno.user
    if dyno.workdir is not None:
        container["Dir"] = dyno.workdir
    return {
        "Name": dyno.name,
        "Labels": {
            **dyno.labels,
            APP_LABEL: dyno.app_name,
            APP_ID_LABEL: dyno.app_id,
            PROCESS_TYPE_LABEL: dyno.process_type,
            DYNO_NAME_LABEL: dyno.dyno_name,
            RELEASE_LABEL: str(dyno.release_version),
        },
        "TaskTemplate": {
            "ContainerSpec": container,
            "Resources": {
                "Limits": {"MemoryBytes": dyno.size.memory_bytes, "Pids": dyno.size.max_processes},
                # Swarm places a dyno only on a node with this much memory not yet reserved;
                # one no node fits stays pending, with Swarm's reason on its task.
                "Reservations": {"MemoryBytes": dyno.size.memory_bytes},
            },
            # The reconciler restarts crashed dynos, with its back-off.
            "RestartPolicy": {"Condition": "none"},
            "Networks": [{"Target": dyno.network}],
            "LogDriver": {"Name": "json-file", "Options": {"max-size": LOG_MAX_SIZE}},
        },
        "Mode": {"Replicated": {"Replicas": 1}},
    }
