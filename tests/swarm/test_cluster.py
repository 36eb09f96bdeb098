"""The two-node swarm itself: both nodes ready, a service spread over both and reachable
through Docker's DNS across nodes (dnsrr on an overlay network), and a drain that moves
tasks; driven through dockyard.nodes where Dockyard has code for it."""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import subprocess
import threading

import httpx
import pytest

from conftest import free_port
from dockyard.nodes import Availability, Node, SwarmNodes
from dockyard.runtime.docker_engine import Engine
from swarm.cluster import (
    ADDRESS_POOL,
    HOST_SOCKET,
    TEST_LABEL,
    WORKER_HOSTNAME,
    Swarm,
    wait_for,
)

pytestmark = pytest.mark.e2e


def _nodes() -> list[Node]:
    async def read() -> list[Node]:
        async with Engine(HOST_SOCKET) as engine:
            return await SwarmNodes(engine).list()

    return asyncio.run(read())


def _exec(swarm: Swarm, container: str, *command: str) -> str:
    socket_path = swarm.worker.socket
    done = subprocess.run(
        ["docker", "-H", f"unix://{socket_path}", "exec", container, *command],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, f"{command} in {container}: {done.stderr}"
    return done.stdout


def test_both_nodes_are_ready_with_their_capacity(swarm: Swarm) -> None:
    nodes = {node.id: node for node in _nodes()}
    assert set(nodes) == {swarm.manager_id, swarm.worker_id}
    manager, worker = nodes[swarm.manager_id], nodes[swarm.worker_id]
    assert (manager.role, manager.leader, worker.role) == ("manager", True, "worker")
    assert manager.state == worker.state == "ready"
    assert worker.hostname == WORKER_HOSTNAME
    assert worker.address == "10.213.0.2"
    for node in (manager, worker):
        assert node.availability == "active"
        assert node.cpus >= 1
        assert node.memory_mb > 100
    # No routing mesh: the ingress network was removed, nothing else took an address.
    networks = swarm.manager.get("/networks")
    assert "ingress" not in {n["Name"] for n in networks}


def test_service_spreads_over_both_nodes_and_a_drain_moves_its_tasks(swarm: Swarm) -> None:
    network = swarm.create_network("dysw-test-net")
    # Swarm's allocator gives the network its subnet a moment after it is made.
    config = wait_for(
        lambda: swarm.manager.get(f"/networks/{network}")["IPAM"]["Config"], 30, "a subnet"
    )
    subnet = config[0]["Subnet"]
    assert ipaddress.IPv4Network(subnet).subnet_of(ipaddress.IPv4Network(ADDRESS_POOL))
    swarm.create_service(
        "dysw-echo",
        {
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": swarm.image,
                    # Each task answers a connection with its hostname (its container ID).
                    "Command": ["/usr/bin/socat", "TCP-LISTEN:5000,fork,reuseaddr",
                                "EXEC:/bin/hostname"],
                    "Init": True,  # docker-init: SIGTERM stops it at once
                },
                "Networks": [{"Target": network}],
                "Placement": {"Preferences": [{"Spread": {"SpreadDescriptor": "node.id"}}]},
                "RestartPolicy": {"Condition": "any", "Delay": 100_000_000},
            },
            "Mode": {"Replicated": {"Replicas": 4}},
            "EndpointSpec": {"Mode": "dnsrr"},
            "UpdateConfig": {"Order": "start-first"},
        },
    )  # fmt: skip
    both = {swarm.manager_id: 2, swarm.worker_id: 2}
    wait_for(lambda: swarm.running_on("dysw-echo") == both, 60, "2 tasks on each node")

    # Docker's DNS names every task (dnsrr: no virtual IP, so no IPVS), and a task on the
    # worker reaches each of them, on its own node and over VXLAN on the manager.
    on_worker = swarm.worker.get("/containers/json")
    container = next(c["Id"] for c in on_worker if "dysw-echo" in c["Names"][0])
    addresses = _exec(swarm, container, "/usr/bin/getent", "hosts", "tasks.dysw-echo").split()
    addresses = [a for a in addresses if a != "tasks.dysw-echo"]
    assert len(addresses) == 4
    assert all(ipaddress.ip_address(a) in ipaddress.ip_network(subnet) for a in addresses)
    answers = {
        _exec(
            swarm, container, "/usr/bin/socat", "-T3", "-", f"TCP:{a}:5000,connect-timeout=3"
        ).strip()
        for a in addresses
    }
    containers = {c["Id"][:12] for c in on_worker} | {
        c["Id"][:12] for c in swarm.manager.get("/containers/json")
    }
    assert len(answers) == 4
    assert answers <= containers

    async def drain(availability: Availability) -> None:
        async with Engine(HOST_SOCKET) as engine:
            node = await SwarmNodes(engine).set_availability(WORKER_HOSTNAME, availability)
            assert node.availability == availability

    asyncio.run(drain("drain"))
    wait_for(
        lambda: swarm.running_on("dysw-echo") == {swarm.manager_id: 4},
        60,
        "all 4 tasks moved to the manager",
    )
    wait_for(
        lambda: not [c for c in swarm.worker.get("/containers/json") if "dysw-echo" in str(c)],
        60,
        "the worker's task containers gone",
    )
    asyncio.run(drain("active"))
    worker = next(n for n in _nodes() if n.id == swarm.worker_id)
    assert worker.availability == "active"
    assert not worker.tasks
    swarm.remove_service("dysw-echo")


# The router's part, as the swarm driver will run it: HAProxy on the overlay network finds
# the tasks through Docker's DNS (no IPVS), and retries an idempotent request that meets a
# task going away.
ROUTER_CONFIG = """
global
  log stdout format raw local0
defaults
  mode http
  timeout connect 1s
  timeout client 10s
  timeout server 10s
  retries 3
  option redispatch 1
  retry-on conn-failure empty-response response-timeout
resolvers docker
  nameserver dns 127.0.0.11:53
  hold valid 1s
frontend web
  bind :8080
  default_backend tasks
backend tasks
  balance roundrobin
""" + " ".join(
    [
        "  server-template task 8 tasks.dysw-web:5000 check inter 500ms fall 1 rise 1",
        # Resolved by HAProxy at run time (every second), not once by libc at its start.
        "resolvers docker init-addr none resolve-prefer ipv4\n",
    ]
)


def test_haproxy_reaches_every_task_through_docker_dns_and_a_drain_fails_no_request(
    swarm: Swarm,
) -> None:
    network = swarm.create_network("dysw-route-net")
    swarm.create_service(
        "dysw-web",
        {
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": swarm.image,
                    "Command": ["/usr/bin/socat", "TCP-LISTEN:5000,fork,reuseaddr",
                                "EXEC:/bin/respond"],
                    "Init": True,
                },
                "Networks": [{"Target": network}],
                "Placement": {"Preferences": [{"Spread": {"SpreadDescriptor": "node.id"}}]},
            },
            "Mode": {"Replicated": {"Replicas": 4}},
            "EndpointSpec": {"Mode": "dnsrr"},
        },
    )  # fmt: skip
    config = swarm.manager.call(
        "POST",
        "/configs/create",
        json={
            "Name": "dysw-haproxy",
            "Labels": {TEST_LABEL: "1"},
            "Data": base64.b64encode(ROUTER_CONFIG.encode()).decode(),
        },
    ).json()["ID"]
    port = free_port()
    swarm.create_service(
        "dysw-router",
        {
            "TaskTemplate": {
                "ContainerSpec": {
                    "Image": swarm.image,
                    "Command": ["/usr/sbin/haproxy", "-W", "-db", "-f", "/etc/haproxy.cfg"],
                    "Init": True,
                    "Configs": [
                        {
                            "File": {"Name": "/etc/haproxy.cfg", "UID": "0", "GID": "0",
                                     "Mode": 0o444},
                            "ConfigID": config,
                            "ConfigName": "dysw-haproxy",
                        }
                    ],
                },
                "Networks": [{"Target": network}],
                "Placement": {"Constraints": ["node.role==manager"]},
            },
            "Mode": {"Replicated": {"Replicas": 1}},
            # Published on the manager itself (host mode: iptables, not the IPVS mesh).
            "EndpointSpec": {
                "Mode": "dnsrr",
                "Ports": [{"Protocol": "tcp", "TargetPort": 8080, "PublishedPort": port,
                           "PublishMode": "host"}],
            },
        },
    )  # fmt: skip
    both = {swarm.manager_id: 2, swarm.worker_id: 2}
    wait_for(lambda: swarm.running_on("dysw-web") == both, 60, "2 web tasks on each node")
    url = f"http://127.0.0.1:{port}/"
    answered: set[str] = set()

    def every_task_answers() -> bool:
        try:
            reply = httpx.get(url, timeout=3)
        except httpx.TransportError:
            return False
        if reply.status_code == 200:
            answered.add(reply.text.strip())
        return len(answered) == 4

    wait_for(every_task_answers, 60, "each of the 4 tasks answering through HAProxy")
    on_worker = {c["Id"][:12] for c in swarm.worker.get("/containers/json")}
    assert len(answered & on_worker) == 2  # two answers came over VXLAN from the worker

    # A steady load while the worker is drained: every request answered.
    failures: list[str] = []
    served: list[str] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                try:
                    reply = client.get(url)
                except httpx.TransportError as exc:
                    failures.append(repr(exc))
                    continue
                if reply.status_code == 200:
                    served.append(reply.text.strip())
                else:
                    failures.append(f"{reply.status_code} {reply.text[:100]}")

    loader = threading.Thread(target=load)
    loader.start()
    try:
        wait_for(lambda: len(served) > 20, 30, "the load running")
        asyncio.run(_set_availability("drain"))
        wait_for(
            lambda: swarm.running_on("dysw-web") == {swarm.manager_id: 4},
            60,
            "all 4 web tasks on the manager",
        )
        before = len(served)
        wait_for(lambda: len(served) > before + 40, 30, "more requests after the drain")
    finally:
        stop.set()
        loader.join()
    asyncio.run(_set_availability("active"))
    assert failures == []
    on_manager = {c["Id"][:12] for c in swarm.manager.get("/containers/json")}
    assert set(served[-20:]) <= on_manager
    print(f"\n{len(served)} requests through a drain, none failed")
    swarm.remove_service("dysw-router")
    swarm.remove_service("dysw-web")
    swarm.manager.call("DELETE", f"/configs/{config}")


async def _set_availability(availability: Availability) -> None:
    async with Engine(HOST_SOCKET) as engine:
        node = await SwarmNodes(engine).set_availability(WORKER_HOSTNAME, availability)
        assert node.availability == availability
