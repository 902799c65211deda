"""What the kernel's cpufreq sysfs says about each CPU, read through HostFS.

Layout (Documentation/admin-guide/pm/cpufreq.rst): sys/devices/system/cpu/cpuN/cpufreq is a
symlink to ../cpufreq/policyM; CPUs listed in a policy's `affected_cpus` share every attribute,
so writing cpu1's scaling_max_freq changes cpu0's too when they share policy0. A CPU without the
cpufreq directory (typical of VMs) simply has no frequency control.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from nodeagent.host import cpulist
from nodeagent.host.fs import HostFS

CPU_DIR = "sys/devices/system/cpu"
_CPU_NAME = re.compile(r"^cpu(\d+)$")


@dataclass(frozen=True)
class CpuFreqState:
    """One CPU's cpufreq policy as sysfs shows it (frequencies in kHz, as sysfs prints them)."""

    cpu: int
    driver: str
    governors: tuple[str, ...]
    frequencies: tuple[int, ...]  # empty when the driver offers a continuous range (intel_pstate)
    cpuinfo_min: int
    cpuinfo_max: int
    governor: str
    scaling_min: int
    scaling_max: int
    current: int | None
    affected: frozenset[int]  # CPUs sharing this policy (itself included)

    def inventory(self) -> dict[str, object]:
        """The CPU as the inventory shows it: exactly the fields of the proto `Cpu` message."""
        return {
            "id": self.cpu,
            "cpufreq_available": True,
            "available_governors": list(self.governors),
            "available_frequencies_khz": list(self.frequencies),
            "cpuinfo_min_khz": self.cpuinfo_min,
            "cpuinfo_max_khz": self.cpuinfo_max,
            "governor": self.governor,
            "scaling_min_khz": self.scaling_min,
            "scaling_max_khz": self.scaling_max,
            "current_khz": self.current or 0,
        }


def attr_path(cpu: int, attr: str) -> str:
    """Path of a cpufreq attribute of one CPU, relative to the fs root."""
    return f"{CPU_DIR}/cpu{cpu}/cpufreq/{attr}"


def present_cpus(fs: HostFS) -> frozenset[int]:
    """CPU ids with a cpuN directory (present, online or not)."""
    if not fs.is_dir(CPU_DIR):
        return frozenset()
    return frozenset(int(m.group(1)) for name in fs.listdir(CPU_DIR) if (m := _CPU_NAME.match(name)))


def online_cpus(fs: HostFS) -> frozenset[int]:
    """The kernel's `online` mask; every present CPU when the file is missing (minimal trees)."""
    text = fs.read_optional(f"{CPU_DIR}/online")
    return cpulist.parse(text) if text is not None else present_cpus(fs)


def read_cpu(fs: HostFS, cpu: int) -> CpuFreqState | None:
    """The CPU's policy, or None when it has no cpufreq directory."""
    if not fs.is_dir(attr_path(cpu, "")):
        return None

    def text(attr: str) -> str | None:
        return fs.read_optional(attr_path(cpu, attr))

    def number(attr: str) -> int | None:
        raw = text(attr)
        return int(raw) if raw is not None and raw.strip().isdigit() else None

    affected = text("affected_cpus")
    freqs = text("scaling_available_frequencies")
    return CpuFreqState(
        cpu=cpu,
        driver=text("scaling_driver") or "",
        governors=tuple((text("scaling_available_governors") or "").split()),
        frequencies=tuple(sorted(int(f) for f in freqs.split())) if freqs else (),
        cpuinfo_min=number("cpuinfo_min_freq") or 0,
        cpuinfo_max=number("cpuinfo_max_freq") or 0,
        governor=text("scaling_governor") or "",
        scaling_min=number("scaling_min_freq") or 0,
        scaling_max=number("scaling_max_freq") or 0,
        current=number("scaling_cur_freq"),
        affected=cpulist.parse_words(affected) if affected else frozenset({cpu}),
    )
