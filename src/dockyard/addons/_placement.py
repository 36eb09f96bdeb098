"""Which server an add-on of a database service lives on: the operator's or the platform's.

A provider makes new add-ons on the operator's server when its URL is set, else on the
server the platform runs under its directory. An add-on's data records which (``platform``),
and its operations go to that server for as long as it exists, so setting the operator's URL
later leaves the add-ons already made where they are, on a server the platform still runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit


class PlatformServer(Protocol):
    """A database server the platform runs (dockyard.addons._pgserver, _mariadb)."""

    @property
    def port(self) -> int: ...

    def admin_url(self) -> str: ...

    def ensure_running(self) -> None: ...


class Placement:
    """The operator's server URL (may be empty) and the platform's server (None: no root)."""

    default_port: int
    operator_url: str
    server: PlatformServer | None

    def _platform(self, data: Mapping[str, Any] | None) -> bool:
        """Whether ``data``'s add-on (None: a new one) is on the platform's server."""
        if self.server is None:
            return False
        return bool(data.get("platform")) if data is not None else not self.operator_url

    def _admin_url(self, platform: bool) -> str:
        """The admin URL of the platform's server (started if it is not running) or the
        operator's."""
        if platform and self.server is not None:
            self.server.ensure_running()
            return self.server.admin_url()
        return self.operator_url

    def _where(self, platform: bool) -> str:
        if platform and self.server is not None:
            return f"127.0.0.1:{self.server.port} (run by the platform)"
        parts = urlsplit(self.operator_url)
        return f"{parts.hostname or 'localhost'}:{parts.port or self.default_port}"
