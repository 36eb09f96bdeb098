"""The ``driver`` fixture: contract tests run against each runtime driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_support import remove_containers_under, remove_services_under, require_docker
from runtime.test_process import SWARM_REGISTRY


@pytest.fixture(params=["process", "docker", "swarm"])
def driver(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The runtime driver under test; docker and swarm tests leave no containers or services
    behind. The swarm driver runs on the two-node swarm (tests/swarm/cluster.py)."""
    if request.param in ("docker", "swarm"):
        require_docker()
    if request.param == "swarm":
        swarm = request.getfixturevalue("swarm")
        monkeypatch.setenv(SWARM_REGISTRY, swarm.registry)
    yield request.param
    if request.param == "swarm":
        remove_services_under(tmp_path)
    if request.param in ("docker", "swarm"):
        remove_containers_under(tmp_path)
