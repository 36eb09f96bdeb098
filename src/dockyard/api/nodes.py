"""``/nodes``: the nodes dynos run on (Dockyard's own resource; Heroku has none), for admins.

``GET /nodes`` lists them (:meth:`dockyard.nodes.Node.to_json`), with every app's dynos on
each; ``POST /nodes/{node}/actions/drain`` and ``.../activate`` change a swarm node's
availability and answer the node. ``{node}`` is a node ID, a unique ID prefix or a hostname.
Only admins may call them: a node shows other users' apps.
"""

from __future__ import annotations

from fastapi import APIRouter, Request

from dockyard import nodes
from dockyard.api.context import Authenticated, Caller
from dockyard.api.shapes import Json
from dockyard.errors import Forbidden
from dockyard.reconciler import Reconciler
from dockyard.runtime import Dyno

router = APIRouter()


def _admin(caller: Caller) -> None:
    with caller.transaction() as (_session, user):
        if not user.admin:
            raise Forbidden("only admins can see and manage the nodes; ask an admin")


async def _dynos(request: Request) -> list[Dyno]:
    reconciler: Reconciler | None = getattr(request.app.state, "reconciler", None)
    return await reconciler.runtime.list() if reconciler is not None else []


@router.get("/nodes", summary="The nodes dynos run on, and what runs on each (admins)")
async def list_nodes(caller: Authenticated) -> list[Json]:
    _admin(caller)
    dynos = await _dynos(caller.request) if caller.settings.runtime != "swarm" else []
    return [node.to_json() for node in await nodes.listing(caller.settings, dynos)]


@router.post("/nodes/{node}/actions/drain", summary="Move a swarm node's dynos away (admins)")
async def drain(node: str, caller: Authenticated) -> Json:
    _admin(caller)
    return (await nodes.set_availability(caller.settings, node, "drain")).to_json()


@router.post("/nodes/{node}/actions/activate", summary="Let a swarm node run dynos (admins)")
async def activate(node: str, caller: Authenticated) -> Json:
    _admin(caller)
    return (await nodes.set_availability(caller.settings, node, "active")).to_json()
