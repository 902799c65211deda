"""Host files of the runtime handlers: containerd's config and its imports, our drop-in and wrapper,
the shims and binaries on PATH, and mounts left behind. Errors leave as HostError."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import tomllib
from pathlib import Path
from typing import Any

from nodeagent.errors import HostError

#: containerd runs shims from its own PATH plus the directory of its binary.
SHIM_PATH = os.pathsep.join(("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"))


def read_configs(config_path: Path) -> list[tuple[str, dict[str, Any]]]:
    """containerd's config and each file its `imports` globs name, parsed, in containerd's order.

    A missing main config is containerd's defaults (no handlers declared); an unparsable file is
    a HostError naming it (containerd would refuse it too)."""
    documents: list[tuple[str, dict[str, Any]]] = []
    if not config_path.exists():
        return documents
    main = _toml(config_path)
    documents.append((str(config_path), main))
    imports = main.get("imports", [])
    for pattern in (str(i) for i in imports) if isinstance(imports, list) else ():
        full = pattern if os.path.isabs(pattern) else str(config_path.parent / pattern)
        for name in sorted(glob.glob(full)):
            documents.append((name, _toml(Path(name))))
    return documents


def _toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise HostError(str(path), f"cannot read: {exc.strerror}", exc.errno) from exc
    except tomllib.TOMLDecodeError as exc:
        raise HostError(str(path), f"not valid TOML: {exc}") from exc


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    """Write `text` atomically unless the file already holds it; True when it was written."""
    try:
        if path.read_text(encoding="utf-8") == text and (path.stat().st_mode & 0o777) == mode:
            return False
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise HostError(str(path), f"cannot read: {exc.strerror}", exc.errno) from exc
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as exc:
        raise HostError(str(path), f"cannot write: {exc.strerror}", exc.errno) from exc
    return True


def which(name: str) -> str | None:
    """The executable `name` (a path, or looked up on containerd's PATH)."""
    if os.path.isabs(name):
        return name if os.access(name, os.X_OK) else None
    return shutil.which(name, path=SHIM_PATH)


def binary_version(path: str, timeout: float = 5.0) -> str:
    """The first line of `<binary> --version` ("" when it does not say)."""
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip() if lines else ""


def mounts_containing(fragment: str) -> list[str]:
    """Mount points whose path contains `fragment` (debris of a failed start shows up here)."""
    try:
        with open("/proc/self/mounts", encoding="utf-8") as handle:
            return [line.split()[1] for line in handle if fragment in line.split()[1]]
    except OSError as exc:
        raise HostError("/proc/self/mounts", f"cannot read: {exc.strerror}", exc.errno) from exc


def unmount(target: str) -> None:
    """Lazily detach a mount left behind (MNT_DETACH), through libc: no umount(8) process."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if libc.umount2(target.encode(), 2) != 0:
        err = ctypes.get_errno()
        raise HostError(target, f"umount: {os.strerror(err)}", err)


def kill_processes_mentioning(*fragments: str) -> list[int]:
    """SIGKILL every process whose command line (NUL-separated) contains one of `fragments` (a
    task's bundle path): a failed gVisor start leaves its gofer and sandbox running with no shim
    to reap them."""
    import signal

    killed: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                cmdline = handle.read()
        except OSError:
            continue  # gone, or a kernel thread
        if any(f.encode() in cmdline for f in fragments):
            try:
                os.kill(int(entry.name), signal.SIGKILL)
                killed.append(int(entry.name))
            except ProcessLookupError:
                pass
    return killed


def restart_unit(unit: str, timeout: float = 120.0) -> None:
    """Restart a systemd unit (containerd's) through systemctl, systemd's own client."""
    try:
        done = subprocess.run(
            ["systemctl", "restart", unit], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise HostError(f"systemd/{unit}", f"restart failed: {exc}") from exc
    if done.returncode != 0:
        raise HostError(f"systemd/{unit}", f"restart failed: {(done.stderr or done.stdout).strip()}")
