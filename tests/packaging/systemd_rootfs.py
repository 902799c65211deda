"""A Debian rootfs with systemd and the project installed, booted in systemd-nspawn, for the
tests that run the units under a real service manager.

The rootfs comes from `mmdebstrap` (Debian's own packages: systemd, dbus, python3, procps for
the agent unit's /bin/kill, libstdc++6 for grpcio's wheel). The project goes into a venv at
/opt/mlsysops made by the rootfs's own python3, offline, as deploy/images/offline_install.py
does it for the container images too. Bind-mounting this venv instead does not work: its python lives under
/root (pyenv), which the units' ProtectHome=yes hides from the daemons.

`--private-network` gives the container its own loopback, so its daemons' ports (8000, 9465,
9466) cannot collide with anything on the host, and the CAP_NET_ADMIN nspawn grants only then.
`--register=no` means no machined, so `systemctl --machine` and `systemd-run --machine` cannot
reach the container: commands enter its namespaces with `nsenter -t <leader pid> -a` instead.
"""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[2] / "deploy" / "images"))
from offline_install import VENV, build_wheel, debian_rootfs, install_venv

__all__ = ["VENV", "Container", "boot", "build_rootfs", "install_project"]

PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "procps", "libstdc++6")


def build_rootfs(target: Path) -> None:
    """A minimal bootable Debian (about 50 s on this machine, most of it downloads and dpkg)."""
    debian_rootfs(target, "essential", PACKAGES)


def install_project(rootfs: Path, workdir: Path) -> None:
    """/opt/mlsysops in the rootfs: a venv of its python3, every role's dependencies, the project's
    wheel (deploy/images/offline_install.py, shared with the image builder)."""
    install_venv(rootfs, build_wheel(workdir))


@dataclass
class Container:
    """A booted systemd-nspawn container; `run` executes a command inside it (all namespaces)."""

    process: subprocess.Popen[bytes]
    leader: int

    def run(self, *command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *command],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
        return done

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "--value", "-p", prop, unit).stdout.strip()

    def poweroff(self, timeout: float = 60) -> int:
        self.run("systemctl", "poweroff", "--no-block", check=False)
        return self.process.wait(timeout=timeout)


def boot(rootfs: Path, log: Path, timeout: float = 60) -> Container:
    """Boot `rootfs` and wait until its system manager says the boot finished."""
    process = subprocess.Popen(
        ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--console=passive",
         "--private-network", "--directory", str(rootfs), "--machine=mlsysops-test"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    leader = None
    while leader is None:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        leader = int(pids[0]) if pids else None
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"systemd-nspawn did not start: {log.read_text()}")
        time.sleep(0.1)
    container = Container(process, leader)
    state = ""
    while state not in ("running", "degraded"):  # "" while the container's bus is not up yet
        if time.monotonic() > deadline:
            raise AssertionError(f"boot ended {state!r}: {log.read_text()}")
        time.sleep(0.2)
        answer = container.run("systemctl", "is-system-running", "--wait", timeout=timeout, check=False)
        state = answer.stdout.strip()
    return container
