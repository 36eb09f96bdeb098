"""The two-node swarm (tests/swarm/cluster.py), made once for the swarm tests."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from swarm.cluster import Swarm, Unavailable, two_node_swarm


@pytest.fixture(scope="package")
def swarm() -> Iterator[Swarm]:
    try:
        with two_node_swarm() as running:
            print(f"\nswarm set up: {running.timings}", file=sys.stderr)
            yield running
    except Unavailable as exc:
        pytest.skip(f"no two-node swarm here: {exc}")
