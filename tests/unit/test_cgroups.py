"""Finding the platform's cgroups and writing a dyno's limits, on fake cgroup trees (tmp_path).

The kernel's side (limits that hold, OOM kills, fork failures) is in tests/runtime/test_limits.py.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

import pytest

from dockyard.formation import SIZES
from dockyard.runtime import cgroups
from dockyard.runtime.cgroups import Group, Layout, Limits, Unavailable, delegate, detect

STANDARD_2X = SIZES["standard-2x"]
LIMITS = Limits(
    memory_bytes=STANDARD_2X.memory_bytes,
    cpu_weight=STANDARD_2X.cpu_weight,
    cpu_shares=STANDARD_2X.cpu_shares,
    max_processes=STANDARD_2X.max_processes,
)

# As on a host with a hierarchy per controller (and a controller-less cgroup2 alongside).
V1_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
V1_CGROUP = """\
9:name=systemd:/
8:pids:/
4:memory:/process_api/abc
1:cpu,cpuacct:/
0::/
"""
V2_MOUNTINFO = """\
22 1 0:20 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate
"""
V2_CGROUP = "0::/system.slice/dockyard.service\n"


def fake_v2(root: Path, controllers: str = "cpuset cpu io memory pids") -> Path:
    own = root / "sys/fs/cgroup/system.slice/dockyard.service"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text(controllers + "\n")
    (own / "cgroup.subtree_control").write_text("\n")
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n")
    return own


def test_v1_one_directory_per_controller_under_the_platforms_own(tmp_path: Path) -> None:
    layout = detect(V1_MOUNTINFO, V1_CGROUP, root=tmp_path)
    assert layout.version == 1
    assert layout.parents == {
        "memory": tmp_path / "sys/fs/cgroup/memory/process_api/abc",
        "cpu": tmp_path / "sys/fs/cgroup/cpu,cpuacct",
        "pids": tmp_path / "sys/fs/cgroup/pids",
    }


def test_v1_in_a_container_that_mounts_its_own_part_of_the_hierarchy(tmp_path: Path) -> None:
    mountinfo = "35 31 0:32 /docker/c1 /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
    layout = detect(mountinfo, "4:memory:/docker/c1/app\n", root=tmp_path)
    assert layout.parents == {"memory": tmp_path / "sys/fs/cgroup/memory/app"}
    with pytest.raises(Unavailable, match="outside"):
        detect(mountinfo, "4:memory:/elsewhere\n", root=tmp_path)


def test_v2_one_directory_with_the_controllers_it_has(tmp_path: Path) -> None:
    own = fake_v2(tmp_path, "cpu memory")
    layout = detect(V2_MOUNTINFO, V2_CGROUP, root=tmp_path)
    assert layout == Layout(2, {"memory": own, "cpu": own})


def test_no_memory_controller_means_no_limits(tmp_path: Path) -> None:
    fake_v2(tmp_path, "cpu pids")
    with pytest.raises(Unavailable, match="memory controller is not enabled"):
        detect(V2_MOUNTINFO, V2_CGROUP, root=tmp_path)
    with pytest.raises(Unavailable, match="no cgroup memory controller"):
        detect("22 1 0:20 / / rw - ext4 /dev/vda rw\n", "0::/\n", root=tmp_path)


def test_settings_for_each_version() -> None:
    size = STANDARD_2X
    assert [(s.file, s.value, s.required) for s in cgroups.settings(1, LIMITS)] == [
        ("memory.limit_in_bytes", str(size.memory_bytes), True),
        ("memory.memsw.limit_in_bytes", str(size.memory_bytes), False),
        ("cpu.shares", "2048", True),
        ("pids.max", "512", True),
    ]
    assert [(s.file, s.value, s.required) for s in cgroups.settings(2, LIMITS)] == [
        ("memory.max", str(1024 * 1024 * 1024), True),
        ("memory.swap.max", "0", False),
        ("memory.oom.group", "1", False),
        ("cpu.weight", "200", True),
        ("pids.max", "512", True),
    ]


def test_v1_create_writes_the_limits_in_each_hierarchy(tmp_path: Path) -> None:
    layout = detect(V1_MOUNTINFO, V1_CGROUP, root=tmp_path)
    for parent in layout.parents.values():
        parent.mkdir(parents=True)
    # Swap accounting on: the kernel would show this file in every new memory cgroup.
    swap = layout.parents["memory"] / "dockyard/app.web.1.abc/memory.memsw.limit_in_bytes"
    swap.parent.mkdir(parents=True)
    swap.write_text("9223372036854771712\n")

    group = layout.create("app.web.1.abc", LIMITS)
    assert group.paths == {c: p / "dockyard/app.web.1.abc" for c, p in layout.parents.items()}
    memory, cpu, pids = group.paths["memory"], group.paths["cpu"], group.paths["pids"]
    assert (memory / "memory.limit_in_bytes").read_text() == str(2**30)
    assert swap.read_text() == str(2**30)
    assert (cpu / "cpu.shares").read_text() == "2048"
    assert (pids / "pids.max").read_text() == "512"
    assert Group.from_json(group.to_json()) == group


def test_v2_create_enables_the_controllers_below_dockyard(tmp_path: Path) -> None:
    own = fake_v2(tmp_path)
    layout = detect(V2_MOUNTINFO, V2_CGROUP, root=tmp_path)
    group = layout.create("app.worker.1.abc", LIMITS)
    directory = own / "dockyard/app.worker.1.abc"
    assert group.directories == [directory]
    assert (own / "dockyard/cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    assert (directory / "memory.max").read_text() == str(2**30)
    assert (directory / "cpu.weight").read_text() == "200"
    assert (directory / "pids.max").read_text() == "512"


def test_v2_delegation_moves_the_platform_into_a_leaf_when_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    own = fake_v2(tmp_path)
    leaf = own / cgroups.PLATFORM_LEAF

    def enable(directory: Path, controllers: list[str]) -> None:
        """The kernel's "no internal processes" rule, for a cgroup with this process in it."""
        if not (leaf / "cgroup.procs").exists():
            raise OSError(errno.EBUSY, "Device or resource busy")
        (directory / "cgroup.subtree_control").write_text(" ".join(f"+{c}" for c in controllers))

    monkeypatch.setattr(cgroups, "_enable", enable)
    layout = delegate(detect(V2_MOUNTINFO, V2_CGROUP, root=tmp_path))
    assert set(layout.parents) == {"memory", "cpu", "pids"}
    assert (leaf / "cgroup.procs").read_text() == str(os.getpid())

    # Not alone: the platform moves nobody else, and dynos run without limits.
    other = tmp_path / "other"
    own = fake_v2(other)
    (own / "cgroup.procs").write_text(f"{os.getpid()}\n1\n")
    leaf = own / cgroups.PLATFORM_LEAF
    with pytest.raises(Unavailable, match="Delegate=yes"):
        delegate(detect(V2_MOUNTINFO, V2_CGROUP, root=other))
    assert not leaf.exists()


def test_oom_kills_and_memory_in_use_from_each_versions_files(tmp_path: Path) -> None:
    v1, v2 = tmp_path / "v1", tmp_path / "v2"
    v1.mkdir()
    v2.mkdir()
    (v1 / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")
    (v1 / "memory.usage_in_bytes").write_text("5000\n")
    (v1 / "memory.stat").write_text("cache 3000\ntotal_inactive_file 1000\n")
    (v2 / "memory.events").write_text("low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\n")
    (v2 / "memory.current").write_text("8000\n")
    (v2 / "memory.stat").write_text("anon 6000\ninactive_file 500\n")
    assert Group(1, {"memory": v1}).oom_kills() == 2
    assert Group(1, {"memory": v1}).memory_bytes() == 4000
    assert Group(2, {"memory": v2}).oom_kills() == 1
    assert Group(2, {"memory": v2}).memory_bytes() == 7500
    assert Group(2, {"memory": tmp_path / "gone"}).oom_kills() == 0
    assert Group(2, {"memory": tmp_path / "gone"}).memory_bytes() is None


def test_limits_off_is_said_once(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cgroups, "_WARNED", set())
    with caplog.at_level(logging.WARNING, logger="dockyard.runtime"):
        cgroups.limits_off("dynos run without memory, CPU and process limits: no cgroups")
        cgroups.limits_off("dynos run without memory, CPU and process limits: again")
    assert [r.getMessage() for r in caplog.records] == [
        "dynos run without memory, CPU and process limits: no cgroups"
    ]
