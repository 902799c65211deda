"""The cgroup counters of the service's parent group, read from cgroupfs under an injectable
root (v1: cpuacct.usage and cpu/cpu.stat; v2: cpu.stat). Read-only: the node agent, not this
module, writes the limits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlconnector.experiment.stats import CpuCounters


def _stat(path: Path) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in path.read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(" ")
        if value.strip().lstrip("-").isdigit():
            out[key] = int(value)
    return out


@dataclass(frozen=True)
class CgroupCounters:
    """The counters of `group` (a path below the hierarchies, e.g. "mlsysops-exp-1/svc")."""

    group: str
    mount: Path = Path("/sys/fs/cgroup")

    @property
    def v2(self) -> bool:
        return (self.mount / "cgroup.controllers").exists()

    def read(self) -> CpuCounters:
        if self.v2:
            stat = _stat(self.mount / self.group / "cpu.stat")
            return CpuCounters(stat["usage_usec"] * 1000, stat["nr_periods"], stat["nr_throttled"])
        usage = int((self.mount / "cpuacct" / self.group / "cpuacct.usage").read_text(encoding="ascii"))
        stat = _stat(self.mount / "cpu" / self.group / "cpu.stat")
        return CpuCounters(usage, stat["nr_periods"], stat["nr_throttled"])

    def exists(self) -> bool:
        return (self.mount / self.group).is_dir() or (self.mount / "cpu" / self.group).is_dir()
