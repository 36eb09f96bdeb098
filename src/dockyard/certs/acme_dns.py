"""The operator's DNS-01 hook: how the platform publishes the TXT records an ACME CA checks
before it issues a wildcard certificate (``*.<DOCKYARD_DOMAIN>``).

``DOCKYARD_ACME_DNS_HOOK`` names an executable; the platform runs it (no shell, with the
server's environment, so it can hold the DNS provider's credentials)::

    HOOK set _acme-challenge.example.com <value>     publish the TXT record; exit 0 once
                                                     the DNS provider serves it
    HOOK unset _acme-challenge.example.com <value>   remove that record (the same value)

Several values may be published at one name at once (a renewal while the old order is
retried): ``set`` adds one, ``unset`` removes that one. A hook that exits non-zero, or
takes longer than :data:`HOOK_TIMEOUT`, fails the order with its last lines of output.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from pathlib import Path

from dockyard.certs.acme import AcmeError

log = logging.getLogger("dockyard.certs.acme")

HOOK_TIMEOUT = 300.0  # seconds: DNS providers can take minutes to publish a record
_NAME = re.compile(r"^_acme-challenge\.[a-z0-9.-]{1,250}$")
_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,100}$")


class DnsHook:
    """Runs the operator's hook (see the module's docstring)."""

    def __init__(self, path: Path, *, timeout: float = HOOK_TIMEOUT) -> None:
        self.path = path
        self.timeout = timeout

    async def publish_txt(self, name: str, value: str) -> None:
        await self._run("set", name, value)

    async def withdraw_txt(self, name: str, value: str) -> None:
        await self._run("unset", name, value)

    async def _run(self, verb: str, name: str, value: str) -> None:
        if not _NAME.match(name) or not _VALUE.match(value):
            raise AcmeError(f"not a DNS-01 record the hook may be given: {name!r} {value!r}")
        command = [str(self.path), verb, name, value]
        try:
            process = await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
        except OSError as exc:
            raise AcmeError(f"the DNS hook {self.path} could not run: {exc}") from exc
        try:
            async with asyncio.timeout(self.timeout):
                output, _ = await process.communicate()
        except TimeoutError as exc:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            raise AcmeError(
                f"the DNS hook {self.path} {verb} {name} did not finish within "
                f"{self.timeout:g}s"
            ) from exc
        text = output.decode(errors="replace").strip()
        if process.returncode != 0:
            tail = " / ".join(text.splitlines()[-3:]) or "no output"
            raise AcmeError(
                f"the DNS hook {self.path} {verb} {name} failed (exit {process.returncode}): "
                f"{tail}"
            )
        log.info("DNS hook: %s %s", verb, name)
