"""Cgroup layout discovery: which controller lives in which hierarchy, from mountinfo or the tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nodeagent.errors import InvalidSpec
from nodeagent.host.cgroupfs import Hierarchy, discover
from nodeagent.host.fs import HostFS
from nodeagent.mechanisms.base import MechanismContext
from nodeagent.mechanisms.cgroups import CgroupsMechanism

HYBRID_MOUNTINFO = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:9 - cgroup cgroup rw,cpu,cpuacct
34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset,clone_children
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw,nsdelegate
99 23 0:32 / /mnt/elsewhere rw,relatime - cgroup cgroup rw,memory
100 31 0:32 / /sys/fs/cgroup/memory2 rw,relatime - cgroup cgroup rw,memory
101 31 0:40 / /sys/fs/cgroup/net_cls\\040x rw,relatime - cgroup cgroup rw,net_cls
"""


def tree(root: Path, mountinfo: str, dirs: dict[str, str]) -> HostFS:
    (root / "proc/self").mkdir(parents=True)
    (root / "proc/self/mountinfo").write_text(mountinfo)
    for rel, controllers in dirs.items():
        (root / rel).mkdir(parents=True)
        (root / rel / "cgroup.procs").write_text("")
        if controllers is not None and "unified" in rel:
            (root / rel / "cgroup.controllers").write_text(controllers)
    return HostFS(root)


def test_hybrid_layout_from_mountinfo(tmp_path: Path) -> None:
    fs = tree(
        tmp_path,
        HYBRID_MOUNTINFO,
        {
            "sys/fs/cgroup/cpu,cpuacct": "",
            "sys/fs/cgroup/cpuset": "",
            "sys/fs/cgroup/memory": "",
            "sys/fs/cgroup/memory2": "",
            "sys/fs/cgroup/net_cls x": "",
            "sys/fs/cgroup/systemd": "",
            "sys/fs/cgroup/unified": "memory hugetlb",  # memory is claimed by v1: not usable on v2
        },
    )
    layout = discover(fs, "sys/fs/cgroup")
    assert layout.version == "hybrid"
    assert layout.hierarchy_of("cpu") == Hierarchy(
        "v1", "sys/fs/cgroup/cpu,cpuacct", frozenset({"cpu", "cpuacct"})
    )
    assert layout.hierarchy_of("cpuset") == Hierarchy("v1", "sys/fs/cgroup/cpuset", frozenset({"cpuset"}))
    assert layout.hierarchy_of("memory") == Hierarchy("v1", "sys/fs/cgroup/memory", frozenset({"memory"}))
    assert layout.hierarchy_of("hugetlb") == Hierarchy("v2", "sys/fs/cgroup/unified", frozenset({"hugetlb"}))
    assert layout.hierarchy_of("systemd") is None  # a named hierarchy holds no controller
    assert [h.path for h in layout.group_hierarchies()] == [
        "sys/fs/cgroup/cpu,cpuacct",
        "sys/fs/cgroup/cpuset",
        "sys/fs/cgroup/memory",  # not memory2: a bind mount of the same hierarchy (same 0:32)
        "sys/fs/cgroup/unified",
    ]
    assert layout.hierarchy_of("net_cls") == Hierarchy(
        "v1", "sys/fs/cgroup/net_cls x", frozenset({"net_cls"})
    )


def test_pure_v2_from_the_tree_when_there_is_no_mountinfo(tmp_path: Path) -> None:
    (tmp_path / "cg").mkdir()
    (tmp_path / "cg/cgroup.controllers").write_text("cpuset cpu memory\n")
    layout = discover(HostFS(tmp_path), "cg")
    assert layout.version == "v2"
    assert layout.hierarchies == (Hierarchy("v2", "cg", frozenset({"cpuset", "cpu", "memory"})),)


def test_v1_from_the_tree_names_controllers_by_directory(tmp_path: Path) -> None:
    for name in ("cpu,cpuacct", "memory"):
        (tmp_path / "cg" / name).mkdir(parents=True)
        (tmp_path / "cg" / name / "cgroup.procs").write_text("")
    os.symlink("cpu,cpuacct", tmp_path / "cg" / "cpu")  # as systemd lays it out: not a second hierarchy
    layout = discover(HostFS(tmp_path), "cg")
    assert layout.version == "v1"
    assert [h.path for h in layout.hierarchies] == ["cg/cpu,cpuacct", "cg/memory"]


def test_nothing_mounted_is_version_none(tmp_path: Path) -> None:
    assert discover(HostFS(tmp_path), "sys/fs/cgroup").version == "none"


def test_symlink_escape_on_a_v1_layout_is_refused(tmp_path: Path) -> None:
    """cgroupfs itself cannot hold symlinks; a tree that does must still not lead us out."""
    (tmp_path / "cg/cpu/mlsysops").mkdir(parents=True)
    (tmp_path / "cg/cpu/cgroup.procs").write_text("")
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "cg/cpu/mlsysops/app")
    mech = CgroupsMechanism(MechanismContext(fs=HostFS(tmp_path), cgroup_mount="cg"))
    with pytest.raises(InvalidSpec, match="outside the cgroup root") as err:
        mech.validate({"groups": [{"path": "app/x", "cpu_weight": 2}]}, "cgroups")
    assert err.value.field == "cgroups.groups[0].path"
    assert list(outside.iterdir()) == []
