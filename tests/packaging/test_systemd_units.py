"""The three units under real systemd: a Debian rootfs booted in systemd-nspawn, the project
installed at /opt/mlsysops with the rootfs's own python3, `mlsysops install` run there for
every role, then per unit: it verifies with the paths the install made, reaches active (the
agent through Type=notify's READY=1), is restarted by the watchdog (the agent: WatchdogSec=)
and by Restart= after a crash, runs confined (a write outside its writable paths fails, its
capabilities are the unit's), and stops cleanly; and the bridge reaches the agent's socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlsysops.testing import wait_for

sys.path.insert(0, str(Path(__file__).parent))
from systemd_rootfs import VENV, Container, boot, build_rootfs, install_project

CAP_NET_ADMIN, CAP_SYS_ADMIN = 12, 21


@dataclass(frozen=True)
class Unit:
    role: str
    name: str
    capabilities: int  # the unit's CapabilityBoundingSet=, as a mask
    writable: str  # a path the unit may write: the write there succeeds, the one to /usr fails


UNITS = [
    Unit("node", "mlsysops-nodeagent.service", 1 << CAP_NET_ADMIN | 1 << CAP_SYS_ADMIN, "/run/mlsysops"),
    Unit("bridge", "mlsysops-faredge.service", 0, "/var/lib/mlsysops/faredge"),
    Unit("controller", "mlsysops-api.service", 0, "/var/lib/mlsysops/api"),
]
IDS = [u.role for u in UNITS]


@pytest.fixture(scope="module")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Built once per session (mmdebstrap), the project installed, each role's install run inside;
    removed afterwards (about 350 MB that pytest would otherwise keep for three sessions)."""
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap, chroot and systemd-nspawn need root")
    missing = [tool for tool in ("mmdebstrap", "systemd-nspawn", "nsenter") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian packages mmdebstrap, systemd-container)")
    base = tmp_path_factory.mktemp("systemd-rootfs")
    root = base / "root"
    build_rootfs(root)
    install_project(root, base)
    for unit in UNITS:  # the installed wheel's own command, so its units come from mlsysops.units
        done = subprocess.run(
            ["chroot", str(root), f"{VENV}/bin/mlsysops", "install", unit.role],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
    yield root
    shutil.rmtree(base)


@pytest.fixture(scope="module")
def container(rootfs: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    booted = boot(rootfs, tmp_path_factory.mktemp("nspawn") / "console.log")
    try:
        yield booted
    finally:
        if booted.poweroff() != 0:
            booted.process.kill()


def started(container: Container, unit: Unit) -> int:
    """Start `unit` (a no-op when it runs) and return its main pid once it serves."""
    start = container.systemctl("start", unit.name, check=False)  # Type=notify: returns after READY=1
    if start.returncode != 0:
        journal = container.run("journalctl", "--no-pager", "-n", "20", "-u", unit.name, check=False).stdout
        raise AssertionError(f"{unit.name} did not start: {start.stderr}{journal}")
    wait_for(lambda: serving(container, unit), 60, f"{unit.name} to serve", interval=0.3)
    return int(container.show(unit.name, "MainPID"))


def serving(container: Container, unit: Unit) -> bool:
    """The daemon answers its own clients (Type=exec units are active as soon as they exec)."""
    if container.show(unit.name, "ActiveState") != "active":
        return False
    if unit.role == "node":
        return container.show(unit.name, "StatusText").startswith("serving on unix:/run/mlsysops/")
    if unit.role == "bridge":
        return container.run(f"{VENV}/bin/mlsysops", "devices", "list", check=False).returncode == 0
    token = container.run(f"{VENV}/bin/mlsysops", "api", "token", "create", "--role", "viewer").stdout
    probe = (
        "import sys, urllib.request as u; r = u.Request('http://127.0.0.1:8000/api/v1/ping', "
        "headers={'Authorization': 'Bearer ' + sys.argv[1]}); print(u.urlopen(r, timeout=5).read().decode())"
    )
    answer = container.run(f"{VENV}/bin/python", "-c", probe, token.strip(), check=False)
    return '"controller":"running"' in answer.stdout


def restarted(container: Container, unit: Unit, old_pid: int, timeout: float) -> int:
    def replaced() -> bool:
        pid = container.show(unit.name, "MainPID")
        return pid not in ("0", str(old_pid)) and container.show(unit.name, "ActiveState") == "active"

    wait_for(replaced, timeout, f"{unit.name} to be restarted", interval=0.3)
    wait_for(lambda: serving(container, unit), 60, f"{unit.name} to serve again", interval=0.3)
    return int(container.show(unit.name, "MainPID"))


def test_installed_units_verify_with_the_paths_the_install_made(rootfs: Path) -> None:
    for unit in UNITS:
        result = subprocess.run(
            ["systemd-analyze", "verify", f"--root={rootfs}", unit.name], capture_output=True, text=True
        )
        assert result.returncode == 0 and not result.stderr.strip(), f"{unit.name}: {result.stderr}"


@pytest.mark.parametrize("unit", UNITS, ids=IDS)
def test_unit_reaches_active_and_serves(container: Container, unit: Unit) -> None:
    started(container, unit)
    if unit.role == "node":  # Type=notify: active only after READY=1
        assert container.show(unit.name, "Type") == "notify"
        assert container.show(unit.name, "NotifyAccess") == "main"


def test_the_bridge_reports_its_devices_to_the_agent_through_the_group_socket(container: Container) -> None:
    """The bridge, a dynamic user, may use the agent's socket (0660, group mlsysops)."""
    node, bridge = UNITS[0], UNITS[1]
    started(container, node)
    container.systemctl("restart", bridge.name)  # a fresh first report, to an agent that listens
    started(container, bridge)
    fetch = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9466/metrics').read().decode())"

    def reported() -> bool:
        metrics = container.run(f"{VENV}/bin/python", "-c", fetch, check=False).stdout
        return 'faredge_inventory_reports_total{result="ok"}' in metrics

    wait_for(reported, 30, "the bridge's first ReportDevices", interval=0.5)
    socket = container.run("stat", "-c", "%a %G", "/run/mlsysops/nodeagent.sock").stdout.split()
    assert socket == ["660", "mlsysops"]


def test_the_bridge_password_is_the_provisioned_one_once_there(container: Container, rootfs: Path) -> None:
    """LoadCredential= from where `mlsysops devices provision` writes it; SetCredential= before."""
    bridge = UNITS[1]
    credential = f"/run/credentials/{bridge.name}/bridge.password"
    pid = started(container, bridge)
    assert container.run("nsenter", "-t", str(pid), "-m", "cat", credential).stdout == "unprovisioned"
    password = rootfs / "etc/mlsysops/faredge/broker/bridge.password"
    password.parent.mkdir(mode=0o700)
    password.write_text("s3cret\n")
    password.chmod(0o600)  # root's only: systemd reads it, the dynamic user never does
    try:
        container.systemctl("restart", bridge.name)
        pid = started(container, bridge)
        assert container.run("nsenter", "-t", str(pid), "-m", "cat", credential).stdout == "s3cret\n"
    finally:
        shutil.rmtree(password.parent)


def test_the_watchdog_restarts_a_stopped_agent(container: Container) -> None:
    unit = UNITS[0]
    pid = started(container, unit)
    restarts = int(container.show(unit.name, "NRestarts"))
    container.run("kill", "-STOP", str(pid))  # alive, but no more WATCHDOG=1
    assert container.show(unit.name, "WatchdogUSec") == "30s"  # WatchdogSec=30 of the unit
    restarted(container, unit, pid, timeout=30 + 30)
    assert int(container.show(unit.name, "NRestarts")) == restarts + 1
    journal = container.run("journalctl", "--no-pager", "-u", unit.name).stdout
    assert "Watchdog timeout" in journal


@pytest.mark.parametrize("unit", UNITS, ids=IDS)
def test_restart_after_a_crash(container: Container, unit: Unit) -> None:
    pid = started(container, unit)
    restarts = int(container.show(unit.name, "NRestarts"))
    container.run("kill", "-KILL", str(pid))
    restarted(container, unit, pid, timeout=30)  # RestartSec=2
    assert int(container.show(unit.name, "NRestarts")) == restarts + 1


@pytest.mark.parametrize("unit", UNITS, ids=IDS)
def test_hardening_is_enforced_on_the_running_daemon(container: Container, unit: Unit) -> None:
    pid = started(container, unit)
    in_its_view = ["nsenter", "-t", str(pid), "-m", "--"]  # the daemon's mount namespace
    for outside in ("/usr/mlsysops-probe", "/etc/mlsysops/probe", "/var/lib/mlsysops-probe"):
        denied = container.run(*in_its_view, "touch", outside, check=False)
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr, outside
    container.run(*in_its_view, "sh", "-c", f"touch {unit.writable}/probe && rm {unit.writable}/probe")
    status = dict(
        line.split(":\t", 1) for line in container.run("cat", f"/proc/{pid}/status").stdout.splitlines()
    )
    assert int(status["CapBnd"], 16) == unit.capabilities
    assert status["NoNewPrivs"].strip() == "1" and status["Seccomp"].strip() == "2"  # filter mode


@pytest.mark.parametrize("unit", UNITS, ids=IDS)
def test_clean_stop(container: Container, unit: Unit) -> None:
    started(container, unit)
    container.systemctl("stop", unit.name)
    assert container.show(unit.name, "ActiveState") == "inactive"
    assert container.show(unit.name, "Result") == "success"
    journal = container.run("journalctl", "--no-pager", "-u", unit.name, "-n", "5").stdout
    assert "Deactivated successfully" in journal
