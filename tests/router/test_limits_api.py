"""An app's own router timeouts through the API: set, shown, reset with null, bad values
refused with nothing written; the route table carries them as the timeouts map."""

from __future__ import annotations

from api.checks import error, ok, unchanged
from conftest import Api
from dockyard.router import haproxy as hp
from dockyard.router.table import read_table


def test_router_timeouts_are_set_shown_reset_and_routed(api: Api) -> None:
    alice = api.user("alice@example.com")
    app = ok(alice.client.post("/apps", json={"name": "slow"}), 201)
    assert (app["router_timeout"], app["router_idle_timeout"]) == (None, None)

    body = {"router_timeout": 120, "router_idle_timeout": 600}
    updated = ok(alice.client.patch("/apps/slow", json=body))
    assert (updated["router_timeout"], updated["router_idle_timeout"]) == (120, 600)
    backend = f"app-{app['id']}"
    table = read_table(api.database, api.settings)
    assert hp.app_timeouts(table) == {
        f"{backend}:server": "120000",
        f"{backend}:tunnel": "600000",
    }

    # A field left out stays; null goes back to the platform's.
    updated = ok(alice.client.patch("/apps/slow", json={"router_timeout": None}))
    assert (updated["router_timeout"], updated["router_idle_timeout"]) == (None, 600)
    assert hp.app_timeouts(read_table(api.database, api.settings)) == {
        f"{backend}:tunnel": "600000"
    }

    for bad in (0, -5, 3601, "soon", 1.5):
        with unchanged(api.database):
            error(
                alice.client.patch("/apps/slow", json={"router_timeout": bad}),
                422,
                "invalid_params",
                "router_timeout",
            )
