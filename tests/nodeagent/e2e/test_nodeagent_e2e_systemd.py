"""The agent as systemd runs it: Type=notify (READY, WATCHDOG, STOPPING) and the hardened unit."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import pytest

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "mlsysops-nodeagent.service"
MAX_EXPOSURE = 4.0
INSTALLED = "/opt/mlsysops/bin/mlsysops-nodeagent"  # README: the venv of the node agent's install


def test_the_agent_notifies_ready_watchdog_and_stopping(agent_env: Any) -> None:
    address = agent_env.workdir / "notify.sock"
    sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sink.bind(str(address))
    sink.settimeout(30)
    try:
        agent = agent_env.start(env={"NOTIFY_SOCKET": str(address), "WATCHDOG_USEC": "200000"})
        messages = [sink.recv(4096).decode()]
        assert messages[0].startswith("READY=1\nSTATUS=serving on unix:")
        messages.append(sink.recv(4096).decode())
        assert messages[1] == "WATCHDOG=1"  # every 0.1 s: half of WATCHDOG_USEC
        assert agent.terminate() == 0
        while not messages[-1].startswith("STOPPING=1"):
            messages.append(sink.recv(4096).decode())
    finally:
        sink.close()


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    # verify checks that ExecStart exists: point it at this environment's entry point.
    daemon = shutil.which("mlsysops-nodeagent") or f"{sys.executable} -m nodeagent"
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, daemon))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_exec_start_is_where_the_documented_install_puts_the_daemon() -> None:
    """Issue 11, defect 9: the unit names the entry point the README's install creates."""
    readme = (UNIT.parents[1] / "README.md").read_text()
    venv = re.search(r"python3 -m venv (\S+) && \1/bin/pip install 'mlsysops\[node\]'", readme)
    assert venv is not None, "the README no longer says where the node agent is installed"
    assert f"{venv.group(1)}/bin/mlsysops-nodeagent" == INSTALLED
    exec_start = re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.MULTILINE)
    assert exec_start is not None and exec_start.group(1) == INSTALLED
    scripts = {ep.name for ep in entry_points(group="console_scripts")}
    assert "mlsysops-nodeagent" in scripts  # the name the install's venv gets in bin/


def test_unit_exposure_is_at_most_4(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "security", "--offline=true", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    if "--offline" in result.stderr and result.returncode != 0:
        pytest.skip(f"this systemd-analyze cannot assess offline: {result.stderr.strip()}")
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE
