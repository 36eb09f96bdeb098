"""Signed, expiring URLs (build output streams, source uploads) with the server's secret.

The secret is made on first use and kept in the data dir, readable only by the platform.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path


class Signer:
    def __init__(self, data_dir: Path) -> None:
        path = data_dir / "secret.key"
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
        self._key = bytes.fromhex(path.read_text().strip())

    def sign(self, purpose: str, value: str, ttl: int = 3600) -> str:
        expires = int(time.time()) + ttl
        mac = hmac.new(self._key, f"{purpose}:{value}:{expires}".encode(), hashlib.sha256)
        return f"{expires}.{mac.hexdigest()}"

    def verify(self, purpose: str, value: str, token: str) -> bool:
        expires, _, digest = token.partition(".")
        if not expires.isdigit() or int(expires) < time.time():
            return False
        mac = hmac.new(self._key, f"{purpose}:{value}:{expires}".encode(), hashlib.sha256)
        return hmac.compare_digest(mac.hexdigest(), digest)
