"""Fixtures of the mechanism tests: simulated hosts, the engine's flow in miniature, tree snapshots,
and a private subtree of the real cgroupfs that is removed whatever happens."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from nodeagent.host.simulated import SimulatedKernelFS, build_simulated_host
from nodeagent.mechanisms.base import Mechanism, Write

REAL_CGROUP = Path("/sys/fs/cgroup")


class Engine:
    """The apply engine's flow as base.py describes it, without journal: enough to specify
    what a mechanism must make possible (validate -> read -> diff -> order -> write)."""

    def __init__(self, mechanism: Mechanism) -> None:
        self.mechanism = mechanism
        self.history: list[Write] = []

    def plan(self, section: Mapping[str, Any]) -> list[Write]:
        plan = self.mechanism.validate(section, self.mechanism.name)
        desired = plan.desired
        actual = self.mechanism.read(desired.keys(), plan.snapshot)
        writes = [Write(self.mechanism.name, k, actual[k], v) for k, v in desired.items() if actual[k] != v]
        return self.mechanism.order(writes)

    def apply(self, section: Mapping[str, Any]) -> list[Write]:
        writes = self.plan(section)
        for write in writes:
            self.mechanism.write(write)
            self.history.append(write)
        return writes

    def reset(self) -> list[Write]:
        """Restore every original, as reset does from the journal (first `before` per key)."""
        originals: dict[str, Write] = {}
        for write in self.history:
            originals.setdefault(write.key, write)
        current = self.mechanism.read(originals.keys())
        undo = self.mechanism.order(
            [
                Write(w.mechanism, k, current[k], w.before)
                for k, w in originals.items()
                if current[k] != w.before
            ]
        )
        for write in undo:
            self.mechanism.write(write)
        self.history.clear()
        return undo


@pytest.fixture
def engine() -> Callable[[Mechanism], Engine]:
    return Engine


@pytest.fixture
def sim_host(tmp_path: Path) -> SimulatedKernelFS:
    """A 4-CPU node with acpi-cpufreq (one policy per CPU) and a pure cgroup v2 mount."""
    return build_simulated_host(tmp_path / "host")


def snapshot_tree(root: Path) -> dict[str, str]:
    """Every file and directory below root with its content: 'nothing was written' made checkable."""
    result: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            result[os.path.join(dirpath, name)] = "<dir>"
        for name in filenames:
            path = os.path.join(dirpath, name)
            result[path] = Path(path).read_text() if not os.path.islink(path) else os.readlink(path)
    return result


@pytest.fixture
def snapshot() -> Callable[[Path], dict[str, str]]:
    return snapshot_tree


def _remove_tree(top: Path) -> None:
    """rmdir a cgroup subtree children first (cgroupfs refuses to remove a non-empty group)."""
    groups = [Path(dirpath) for dirpath, _, _ in os.walk(top)]
    for group in sorted(groups, key=lambda p: len(p.parts), reverse=True):
        os.rmdir(group)


@pytest.fixture
def real_cgroup_root() -> Iterator[str]:
    """A unique cgroup root name on the real cgroupfs, removed in every hierarchy afterwards."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create cgroups in the real cgroupfs")
    if not (REAL_CGROUP / "cpu" / "cgroup.procs").exists():
        pytest.skip("no cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu on this machine")
    name = f"mlsysops-test-{uuid.uuid4().hex[:10]}"
    try:
        yield name
    finally:
        for hierarchy in sorted(REAL_CGROUP.iterdir()):
            _remove_tree(hierarchy / name)
