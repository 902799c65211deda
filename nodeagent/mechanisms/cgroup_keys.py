"""Knob keys of the cgroups mechanism, and the rules a group path must follow.

A key is a path relative to the cgroup mount (so it names the hierarchy too), in three shapes:

    cpu/mlsysops/demo/app/                      the cgroup directory itself: "present" or None
    cpu/mlsysops/demo/app/cpu.cfs_quota_us      an interface file: its canonical value
    mlsysops/cgroup.subtree_control[cpuset]     one controller in a v2 subtree_control:
                                                "enabled" / "disabled"

Keys are self-describing so that reset can act on keys read back from the journal after a
restart, without the profile that produced them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

DIR_PRESENT = "present"
ENABLED, DISABLED = "enabled", "disabled"
SUBTREE_CONTROL = "cgroup.subtree_control"

# fullmatch, ASCII: `$` would accept a trailing newline ("app\n"), `\w` or `\d` Unicode letters.
_TOGGLE = re.compile(r"cgroup\.subtree_control\[([a-z_]+)\]", re.ASCII)
_COMPONENT = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@:-]*", re.ASCII)
_RESERVED_PREFIXES = (
    "cgroup.", "cpu.", "cpuacct.", "cpuset.", "memory.", "io.", "blkio.", "pids.", "hugetlb.",
    "rdma.", "misc.", "devices.", "freezer.", "net_cls.", "net_prio.", "perf_event.",
)  # fmt: skip
_RESERVED_NAMES = frozenset({"tasks", "notify_on_release", "release_agent"})
MAX_DEPTH = 32
MAX_NAME = 255
MAX_PATH = 1024
"""Characters of a whole group path: with the mount and the agent's root in front it must stay
well below PATH_MAX (4096), or the dry run would plan what mkdir then refuses (ENAMETOOLONG)."""


@dataclass(frozen=True)
class CgroupKey:
    """A parsed key: a directory (relative to the mount) and what in it."""

    directory: str
    file: str | None = None  # None: the directory itself
    controller: str | None = None  # set for subtree_control toggles

    @property
    def depth(self) -> int:
        return len([p for p in self.directory.split("/") if p])

    @property
    def is_dir(self) -> bool:
        return self.file is None

    @property
    def is_toggle(self) -> bool:
        return self.controller is not None

    def __str__(self) -> str:
        prefix = f"{self.directory}/" if self.directory else ""
        if self.file is None:
            return prefix
        if self.controller is not None:
            return f"{prefix}{SUBTREE_CONTROL}[{self.controller}]"
        return prefix + self.file


# The three builders spell exactly what str(CgroupKey(...)) does, without building a key object:
# a plan makes a dozen keys per group on every apply.


def dir_key(directory: str) -> str:
    return f"{directory}/" if directory else ""


def file_key(directory: str, file: str) -> str:
    return f"{directory}/{file}" if directory else file


def toggle_key(directory: str, controller: str) -> str:
    return f"{directory}/{SUBTREE_CONTROL}[{controller}]" if directory else f"{SUBTREE_CONTROL}[{controller}]"


@lru_cache(maxsize=4096)
def parse_key(key: str) -> CgroupKey:
    """The key's parts; ValueError for anything that is not one of the three shapes.

    Memoized (keys are immutable and so are the frozen CgroupKeys): a plan parses the same
    keys several times per apply, and every apply of a profile plans the same keys. Bounded, so
    keys read back from a damaged journal cannot grow it without limit; errors are not cached.
    """
    if key.startswith("/") or ".." in key.split("/") or "//" in key:
        raise ValueError("not a cgroups knob key (absolute, '..' or empty component)")
    if key.endswith("/"):
        return CgroupKey(key.rstrip("/"))
    directory, _, last = key.rpartition("/")
    toggle = _TOGGLE.fullmatch(last)
    if toggle:
        return CgroupKey(directory, SUBTREE_CONTROL, toggle.group(1))
    return CgroupKey(directory, last)


def check_group_path(path: str) -> list[str]:
    """The components of a group path, or ValueError saying what is wrong with it.

    Relative, no '..', no empty or hidden components, a conservative character set, and no name
    that collides with a cgroup interface file (a directory "cpu.max" would shadow the knob).
    """
    if not path or not path.strip("/"):
        raise ValueError("must not be empty")
    if path.startswith("/"):
        raise ValueError("must be relative to the cgroup root, not absolute")
    if len(path) > MAX_PATH:
        raise ValueError(f"is {len(path)} characters long (at most {MAX_PATH})")
    parts = path.rstrip("/").split("/")
    if len(parts) > MAX_DEPTH:
        raise ValueError(f"is nested {len(parts)} deep (at most {MAX_DEPTH})")
    for part in parts:
        if part == "..":
            raise ValueError("must not contain '..'")
        if part in ("", "."):
            raise ValueError("must not contain empty or '.' components")
        if len(part) > MAX_NAME:
            raise ValueError(f"component {part[:20]!r}... is longer than {MAX_NAME} characters")
        if not _COMPONENT.fullmatch(part):
            raise ValueError(
                f"component {part[:40]!r} must use only [A-Za-z0-9_.@:-] "
                "and start with a letter, digit or '_'"
            )
        if part in _RESERVED_NAMES or part.startswith(_RESERVED_PREFIXES):
            raise ValueError(f"component {part[:40]!r} would collide with cgroup interface files")
    return parts
