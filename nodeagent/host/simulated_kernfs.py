"""File primitives of the simulated kernel trees (nodeagent.host.simulated), and the errno with
which a simulated store method refuses a write.

Plain files stand in for kernfs attributes: one value, newline-terminated, read back stripped.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from nodeagent.host import cpulist

CPU_DIR = "sys/devices/system/cpu"
NODE_DIR = "sys/devices/system/node"


class KernelRefusal(Exception):
    """What a kernel store method returned: an errno (the simulation's internal signal)."""

    def __init__(self, code: int) -> None:
        super().__init__(os.strerror(code))
        self.code = code


def write_file(path: Path, value: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(value + "\n" if value else "", encoding="ascii")


def read_file(path: Path) -> str:
    return path.read_text(encoding="ascii").strip()


def words(path: Path) -> list[str]:
    """The file's whitespace-separated words; none when it does not exist."""
    return read_file(path).split() if path.is_file() else []


def children(group: Path) -> list[Path]:
    return sorted(p for p in group.iterdir() if p.is_dir())


def parse_list(text: str) -> frozenset[int]:
    """A cpu list as bitmap_parselist() reads it: EINVAL when malformed."""
    try:
        return cpulist.parse(text)
    except cpulist.CpuListError:
        raise KernelRefusal(errno.EINVAL) from None


def format_list(ids: frozenset[int]) -> str:
    return cpulist.format(ids)
