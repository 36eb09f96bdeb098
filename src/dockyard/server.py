"""``dockyard server``: the control plane as one asyncio process.

It runs the API (with the smart HTTP git receiver), the git-over-SSH receiver, the
reconciler (which runs the dynos) and the router (which drives HAProxy) as tasks of the same
loop. Migrations run before the API accepts requests, and SSH and the router serve before the
API, so ``/healthz`` answering means the server is ready. The reconciler starts as a task and
does not hold up ``/healthz``; stopping the server leaves the dynos and HAProxy running, and
the next server adopts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable, Iterator
from types import FrameType

import uvicorn
from fastapi import FastAPI
from sqlalchemy import select

from dockyard import logfmt
from dockyard.addons import Supervisor
from dockyard.api import create_api
from dockyard.certs import platform as certs_platform
from dockyard.certs import renewal
from dockyard.certs.renewal import Renewer
from dockyard.logs.drain_delivery import Drains
from dockyard.logs.hub import LogHub
from dockyard.logs.ingest import DynoIngest
from dockyard.logs.lines import APP
from dockyard.receive.ssh import SSHReceiver
from dockyard.reconciler import Reconciler
from dockyard.release_phase import ReleasePhase
from dockyard.router import Router, RouterError, haproxy
from dockyard.runtime import DynoError, Runtime
from dockyard.runtime.process import ProcessRuntime
from dockyard.settings import Settings
from dockyard.store import App, Certificate, Database, Domain, Formation, LogDrain, Release, migrate

log = logging.getLogger("dockyard.server")
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def prepare(settings: Settings) -> Database:
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    database = Database(settings.database_url)
    migrate(database)
    _announce_tls(settings, certs_platform.prepare(database, settings))
    return database


def _announce_tls(settings: Settings, default: certs_platform.Default) -> None:
    """Say what HTTPS serves by default and, for the local CA's certificate, how to trust it."""
    port = "" if settings.https_port == 443 else f":{settings.https_port}"
    if default.ca_path is None:
        log.info(
            "HTTPS on port %d: the default certificate (%s) is %s",
            settings.https_port,
            ", ".join(default.hostnames),
            default.source,
        )
        return
    log.info(
        "HTTPS on port %d with certificates of the local CA %s; to trust it: "
        "curl --cacert %s https://<app>.%s%s/ (or `dockyard certs:ca ca.pem` and add ca.pem "
        "to your system's or browser's trusted CAs)",
        settings.https_port,
        default.ca_path,
        default.ca_path,
        settings.domain,
        port,
    )


async def serve(settings: Settings) -> None:
    database = prepare(settings)
    api = create_api(settings, database)
    config = uvicorn.Config(
        api,
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
        log_config=None,  # uvicorn's records go through the server's own log (logfmt)
        access_log=False,
        proxy_headers=False,
        server_header=False,
    )
    # Open log streams end when the server stops, or uvicorn would wait for them forever.
    server = _Server(config, on_exit=api.state.logs.end_streams)
    # Listening before the API starts, so that /healthz answering means git over SSH works too.
    ssh = SSHReceiver(settings, api.state.database, api.state.repos)
    with _stop_on_signals(server):
        try:
            await ssh.start()
            hub = await _start_logs(database, api)
            drains = await _start_drains(settings, database, hub)
            # Add-on servers the platform runs answer before dynos that use them start.
            addon_servers = Supervisor(database, api.state.addons.catalog)
            await addon_servers.start()
            # The local CA's default certificate names each app (a new app gets its own name).
            keeper = certs_platform.Keeper(database, settings)
            await keeper.start()
            database.on_commit((App,), keeper.poke)
            reconciler: Reconciler | None = None
            router: Router | None = None
            ingest: DynoIngest | None = None
            renewer: Renewer | None = None
            try:
                reconciler = await _start_reconciler(settings, database, api)
                ingest = await _follow_dynos(settings, hub, reconciler)
                router = await _start_router(settings, database, api, reconciler)
                renewer = await _start_acm(settings, database, router)
                await server.serve()
            finally:
                if renewer is not None:
                    await renewer.close()
                if router is not None:
                    await router.close()
                if reconciler is not None:
                    await api.state.release_phase.close()
                    await reconciler.close()
                if ingest is not None:
                    await ingest.close()
                await addon_servers.close()
                await keeper.close()
                await drains.close()
                await hub.close()
                await ssh.stop()
        finally:
            database.dispose()


async def _start_logs(database: Database, api: FastAPI) -> LogHub:
    """The log hub, loaded from disk, taking the platform's events (before the reconciler)."""
    hub: LogHub = api.state.logs

    def app_ids() -> set[str]:
        with database.transaction() as session:
            return {str(app_id) for app_id in session.scalars(select(App.id))}

    # The logs of apps deleted since are removed.
    await hub.start(await asyncio.to_thread(app_ids))
    api.state.events.listen(hub.event)
    # Build output in the app's logs too, as app[build] lines.
    api.state.builds.log_output = lambda app_id, line: hub.emit(str(app_id), APP, "build", line)
    return hub


async def _start_drains(settings: Settings, database: Database, hub: LogHub) -> Drains:
    """A task per log drain, resuming where each was; a drain added or removed is followed."""
    drains = Drains(
        database,
        hub,
        settings.data_dir / "drains",
        ca_file=settings.drain_ca_file,
        buffer_lines=settings.drain_buffer_lines,
        private_addresses=settings.drain_private_addresses,
    )
    await drains.start()
    database.on_commit((LogDrain, App), drains.poke)
    return drains


async def _follow_dynos(
    settings: Settings, hub: LogHub, reconciler: Reconciler | None
) -> DynoIngest | None:
    """Dyno output into the hub, as a task; None when no dynos run here."""
    if reconciler is None:
        return None
    ingest = DynoIngest(hub, reconciler.runtime, settings.data_dir / "logs")
    await ingest.start()
    return ingest


async def _open_runtime(settings: Settings) -> Runtime:
    """The runtime driver DOCKYARD_RUNTIME names, with the dynos it finds adopted."""
    if settings.runtime == "docker":
        from dockyard.runtime.docker import DockerRuntime

        return await DockerRuntime.open(settings.data_dir, socket_path=settings.docker_socket)
    if settings.runtime == "swarm":
        from dockyard.runtime.swarm import SwarmRuntime

        return await SwarmRuntime.open(
            settings.data_dir, registry=settings.registry, socket_path=settings.docker_socket
        )
    return await ProcessRuntime.open(settings.data_dir)


async def _start_reconciler(
    settings: Settings, database: Database, api: FastAPI
) -> Reconciler | None:
    """The reconciler on DOCKYARD_RUNTIME's driver, started; None (and a warning) without one."""
    try:
        runtime = await _open_runtime(settings)
    except DynoError as exc:
        log.warning("dynos will not run: %s", exc.message)
        return None
    reconciler = Reconciler(
        database,
        api.state.builds.blobs,
        runtime,
        boot_timeout=settings.boot_timeout,
        events=api.state.events,
    )
    api.state.reconciler = reconciler
    # Pending releases run their release command first; each pass finds them (after a restart
    # too), and a push waits for its own.
    phase = ReleasePhase(settings, database, api.state.builds.blobs, reconciler)
    reconciler.each_pass(phase.on_pass)
    api.state.release_phase = phase
    api.state.builds.release_phase = phase
    # A release or a scale starts a pass at once, not at the next periodic one.
    database.on_commit((Release, Formation), reconciler.poke)
    await reconciler.start()
    return reconciler


async def _start_router(
    settings: Settings, database: Database, api: FastAPI, reconciler: Reconciler | None
) -> Router | None:
    """HAProxy on DOCKYARD_HTTP_PORT, serving; None (and a warning) when it cannot run."""
    paths = haproxy.Paths(settings.data_dir / "router")
    options = haproxy.Options(
        http_port=settings.http_port,
        https_port=settings.https_port,
        first_byte_timeout=settings.router_timeout,
        idle_timeout=settings.router_idle_timeout,
        max_body_bytes=settings.router_max_body_mb * 1024 * 1024,
        # Half the CPUs: on a small machine the dynos (and the load) need the rest, and one
        # thread has less to coordinate (bench/router.py measures it).
        threads=settings.router_threads or max(1, len(os.sched_getaffinity(0)) // 2),
        api_timeout=settings.build_timeout + 60,
    )
    hub: LogHub = api.state.logs
    router = Router(
        database,
        settings,
        haproxy.HAProxy(paths, options),
        grace=reconciler.grace if reconciler is not None else 30.0,
        hold=settings.boot_timeout + 5.0,
        log_socket=paths.log_socket,
        sink=hub.router_lines,  # dockyard[router] lines in the app's log stream
    )
    if reconciler is not None:
        router.follow(reconciler)
    try:
        await router.start()
    except RouterError as exc:
        log.warning("the router will not serve apps: %s", exc.message)
        await router.close()
        return None
    if reconciler is not None:
        reconciler.drain_with(router.drain)
    # A new app, domain, certificate, maintenance switch, release or scale is routed at once.
    database.on_commit((App, Certificate, Domain, Formation, Release), router.poke)
    api.state.router = router
    return router


async def _start_acm(
    settings: Settings, database: Database, router: Router | None
) -> Renewer | None:
    """Automated certificates: ordered and renewed for apps with ACM; None without a router,
    which answers the CA's challenges."""
    if router is None:
        log.warning("automated certificates will not be issued: the router does not run")
        return None
    renewer = renewal.start(settings, database, router)
    await renewer.start()
    return renewer


class _Server(uvicorn.Server):
    """uvicorn's server, which also calls ``on_exit`` (on the loop) when a signal stops it."""

    def __init__(self, config: uvicorn.Config, *, on_exit: Callable[[], None]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._on_exit)


@contextlib.contextmanager
def _stop_on_signals(server: uvicorn.Server) -> Iterator[None]:
    """SIGTERM and SIGINT stop the server, and then the other tasks, before the process exits.

    uvicorn re-raises the signal it caught once it has stopped, to the handler that was in
    place before it started: this one, so the receivers still shut down in order.
    """

    def stop(_signal: int, _frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {number: signal.signal(number, stop) for number in STOP_SIGNALS}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def run(settings: Settings) -> None:
    # One key=value line per event on stdout; apps' streams never get any of it.
    logfmt.configure(logging.INFO)
    asyncio.run(serve(settings))
