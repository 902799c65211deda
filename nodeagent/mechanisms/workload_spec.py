"""Workloads the node agent runs itself (nodes without Kubernetes): the spec, its validation, and
the OCI runtime spec a task is created from.

A WorkloadSpec is validated whole before anything is created; every problem is an InvalidSpec
naming the field (`mounts[1].source: /etc escapes the allowed roots /srv/data`). The same spec,
serialised, is stored on the workload's containerd container, so the agent re-adopts a workload
after a restart from containerd alone, and a runtime switch recreates the task from exactly it.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from nodeagent.errors import InvalidSpec

NAME = re.compile(r"[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CGROUP = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
FORBIDDEN_TARGETS = ("/proc", "/sys", "/dev")
DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
SPEC_FIELDS = (
    "name",
    "image",
    "handler",
    "args",
    "env",
    "mounts",
    "cgroup",
    "netns",
    "cpu_quota_us",
    "cpu_period_us",
    "memory_max_bytes",
    "readiness",
    "readiness_timeout_s",
)


@dataclass(frozen=True)
class MountSpec:
    source: str  # host path, below one of the allowed roots
    target: str  # path in the container
    readonly: bool = True


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    image: str
    handler: str
    args: tuple[str, ...]
    env: tuple[str, ...] = ()  # KEY=value
    mounts: tuple[MountSpec, ...] = ()
    cgroup: str = ""  # parent cgroup below the agent's cgroup root ("" for <root>/workloads)
    netns: str = ""  # a named network namespace to join ("" for a new one, loopback only)
    cpu_quota_us: int = 0  # 0: unlimited
    cpu_period_us: int = 100_000
    memory_max_bytes: int = 0  # 0: unlimited
    labels: Mapping[str, str] = field(default_factory=dict)
    readiness: tuple[str, ...] = ()  # a command run in the task; ready when it exits 0 ("": running is ready)
    readiness_timeout_s: float = 10.0

    def with_handler(self, handler: str) -> WorkloadSpec:
        return replace(self, handler=handler)

    def to_json(self) -> bytes:
        data = asdict(self)
        data["labels"] = dict(self.labels)
        return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()

    @staticmethod
    def from_json(data: bytes) -> WorkloadSpec:
        raw = json.loads(data)
        mounts = tuple(MountSpec(**m) for m in raw.pop("mounts", ()))
        return WorkloadSpec(
            **{
                **raw,
                "args": tuple(raw["args"]),
                "env": tuple(raw.get("env", ())),
                "mounts": mounts,
                "readiness": tuple(raw.get("readiness", ())),
                "labels": dict(raw.get("labels", {})),
            }
        )


def validate(
    data: Mapping[str, Any],
    *,
    handlers: Sequence[str],
    allowed_roots: Sequence[str],
    resolve: Callable[[str], str] = posixpath.normpath,
) -> WorkloadSpec:
    """The spec in `data` (the API's fields), or InvalidSpec for the first bad field.

    `handlers` are the configured handler names; `resolve` maps a host path to the real path it
    names (os.path.realpath in production, so a symlink cannot escape the allowed roots).
    """
    unknown = sorted(set(data) - set(SPEC_FIELDS))
    if unknown:
        raise InvalidSpec(unknown[0], f"unknown field (known: {', '.join(SPEC_FIELDS)})")
    name, image, handler, args, env = _process(data, handlers)
    mounts = tuple(_mount(m, i, allowed_roots, resolve) for i, m in enumerate(data.get("mounts") or ()))
    cgroup, netns = _placement(data)
    quota, period, memory = _limits(data)
    readiness, timeout = _readiness(data)
    return WorkloadSpec(
        name,
        image,
        handler,
        args,
        env,
        mounts,
        cgroup,
        netns,
        quota,
        period,
        memory,
        readiness=readiness,
        readiness_timeout_s=timeout,
    )


def _process(
    data: Mapping[str, Any], handlers: Sequence[str]
) -> tuple[str, str, str, tuple[str, ...], tuple[str, ...]]:
    """(name, image, handler, args, env): what runs, and under which handler."""
    name = _text(data, "name")
    if not NAME.fullmatch(name):
        raise InvalidSpec(
            "name",
            f"{name!r} is not a workload name (lower-case letters, digits, '-', '_', '.'; "
            "at most 63, starting and ending with a letter or digit)",
        )
    image = _text(data, "image")
    if not image:
        raise InvalidSpec("image", "required")
    handler = _text(data, "handler") or "runc"
    if handler not in handlers:
        raise InvalidSpec(
            "handler", f"unknown runtime handler {handler!r} (configured: {', '.join(handlers)})"
        )
    args = _strings(data, "args")
    if not args:
        raise InvalidSpec("args", "required: the command to run, e.g. ['/bin/sh', '-c', '...']")
    env = _strings(data, "env")
    for i, item in enumerate(env):
        key, sep, _ = item.partition("=")
        if not sep or not ENV_NAME.fullmatch(key):
            raise InvalidSpec(f"env[{i}]", f"{item!r} is not KEY=value")
    return name, image, handler, args, env


def _placement(data: Mapping[str, Any]) -> tuple[str, str]:
    """(cgroup, netns): where the agent's cgroup and network settings reach the workload."""
    cgroup = _text(data, "cgroup")
    if cgroup and (not CGROUP.fullmatch(cgroup) or ".." in cgroup.split("/")):
        raise InvalidSpec("cgroup", f"{cgroup!r} is not a relative cgroup path below the agent's root")
    netns = _text(data, "netns")
    if netns and not re.fullmatch(r"[A-Za-z0-9_.-]+", netns):
        raise InvalidSpec("netns", f"{netns!r} is not a network namespace name")
    return cgroup, netns


def _limits(data: Mapping[str, Any]) -> tuple[int, int, int]:
    """(cpu quota, cpu period, memory max)."""
    quota = _int(data, "cpu_quota_us", 0, 0, 10**9)
    period = _int(data, "cpu_period_us", 100_000, 1000, 1_000_000)
    memory = _int(data, "memory_max_bytes", 0, 0, 1 << 50)
    if memory and memory < 4 << 20:
        raise InvalidSpec("memory_max_bytes", f"{memory} is below 4 MiB: no container starts in that")
    return quota, period, memory


def _readiness(data: Mapping[str, Any]) -> tuple[tuple[str, ...], float]:
    readiness = _strings(data, "readiness")
    timeout = data.get("readiness_timeout_s", 10.0) or 10.0
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not 0.1 <= timeout <= 600:
        raise InvalidSpec("readiness_timeout_s", f"{timeout!r} is not a number of seconds in 0.1..600")
    return readiness, float(timeout)


def _mount(raw: Any, i: int, roots: Sequence[str], resolve: Callable[[str], str]) -> MountSpec:
    where = f"mounts[{i}]"
    if not isinstance(raw, Mapping):
        raise InvalidSpec(where, "must be a mapping with source, target and readonly")
    source, target = raw.get("source", ""), raw.get("target", "")
    if not isinstance(source, str) or not source.startswith("/"):
        raise InvalidSpec(f"{where}.source", f"{source!r} is not an absolute host path")
    real = resolve(source)
    if not any(_below(real, resolve(root)) for root in roots):
        allowed = ", ".join(roots) or "none: runtime.allowed_mount_roots is empty"
        raise InvalidSpec(f"{where}.source", f"{source} escapes the allowed mount roots ({allowed})")
    if not isinstance(target, str) or not target.startswith("/") or posixpath.normpath(target) == "/":
        raise InvalidSpec(f"{where}.target", f"{target!r} is not an absolute path in the container (not /)")
    target = posixpath.normpath(target)
    if any(_below(target, forbidden) for forbidden in FORBIDDEN_TARGETS):
        raise InvalidSpec(f"{where}.target", f"{target} is reserved for the runtime (/proc, /sys, /dev)")
    readonly = raw.get("readonly", True)
    if not isinstance(readonly, bool):
        raise InvalidSpec(f"{where}.readonly", f"{readonly!r} is not true or false")
    return MountSpec(real, target, readonly)


def _below(path: str, root: str) -> bool:
    path, root = posixpath.normpath(path), posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key, "")
    if not isinstance(value, str):
        raise InvalidSpec(key, f"{value!r} is not a string")
    return value


def _strings(data: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = data.get(key) or ()
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise InvalidSpec(key, "must be a list of strings")
    return tuple(value)


def _int(data: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    value = data.get(key)
    if value is None or (value == 0 and default != 0):
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidSpec(key, f"{value!r} is not an integer in {low}..{high}")
    return value


# ---------------------------------------------------------------- OCI runtime spec

CAPABILITIES = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
]
MASKED = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/proc/scsi",
]
READONLY = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]


def cgroups_path(spec: WorkloadSpec, cgroup_root: str) -> str:
    """The task's cgroup: a child of the workload's parent group, so limits the agent applied to
    that parent (through a profile) stay in force when the task is recreated on another handler."""
    parent = spec.cgroup or "workloads"
    return "/" + "/".join(p for p in (cgroup_root.strip("/"), parent, spec.name) if p)


def oci_spec(
    spec: WorkloadSpec, *, image_env: Sequence[str] = (), cgroup_root: str, netns_dir: str
) -> dict[str, Any]:
    """The OCI runtime spec (config.json) of the workload's task, in containerd's default shape."""
    overrides = {e.partition("=")[0] for e in spec.env}
    env = [e for e in (list(image_env) or [DEFAULT_PATH]) if e.partition("=")[0] not in overrides]
    env += spec.env
    network: dict[str, str] = {"type": "network"}
    if spec.netns:
        network["path"] = posixpath.join(netns_dir, spec.netns)
    resources: dict[str, Any] = {"devices": [{"allow": False, "access": "rwm"}]}
    if spec.cpu_quota_us:
        resources["cpu"] = {"quota": spec.cpu_quota_us, "period": spec.cpu_period_us}
    if spec.memory_max_bytes:
        resources["memory"] = {"limit": spec.memory_max_bytes}
    caps = list(CAPABILITIES)
    return {
        "ociVersion": "1.0.2-dev",
        "process": {
            "user": {"uid": 0, "gid": 0},
            "args": list(spec.args),
            "env": env,
            "cwd": "/",
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs"},
        "hostname": spec.name,
        "mounts": _default_mounts()
        + [
            {
                "destination": m.target,
                "type": "bind",
                "source": m.source,
                "options": ["rbind", "ro" if m.readonly else "rw"],
            }
            for m in spec.mounts
        ],
        "linux": {
            "resources": resources,
            "cgroupsPath": cgroups_path(spec, cgroup_root),
            "namespaces": [{"type": t} for t in ("pid", "ipc", "uts", "mount")] + [network],
            "maskedPaths": MASKED,
            "readonlyPaths": READONLY,
        },
    }


def readiness_process(spec: WorkloadSpec) -> dict[str, Any]:
    """The OCI process of the readiness command: the task's own user, env and capabilities."""
    task = oci_spec(spec, cgroup_root="", netns_dir="")["process"]
    return {**task, "args": list(spec.readiness)}


def _default_mounts() -> list[dict[str, Any]]:
    return [
        {"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]},
        {
            "destination": "/dev",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
        {
            "destination": "/dev/pts",
            "type": "devpts",
            "source": "devpts",
            "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        },
        {
            "destination": "/dev/shm",
            "type": "tmpfs",
            "source": "shm",
            "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        },
        {
            "destination": "/dev/mqueue",
            "type": "mqueue",
            "source": "mqueue",
            "options": ["nosuid", "noexec", "nodev"],
        },
        {
            "destination": "/sys",
            "type": "sysfs",
            "source": "sysfs",
            "options": ["nosuid", "noexec", "nodev", "ro"],
        },
        {
            "destination": "/run",
            "type": "tmpfs",
            "source": "tmpfs",
            "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
        },
    ]
