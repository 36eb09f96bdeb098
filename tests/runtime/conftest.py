"""The ``driver`` fixture: contract tests run against each runtime driver."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from docker_support import remove_containers_under, require_docker


@pytest.fixture(params=["process", "docker"])
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The runtime driver under test; docker tests leave no containers behind."""
    if request.param == "docker":
        require_docker()
    yield request.param
    if request.param == "docker":
        remove_containers_under(tmp_path)
