"""The agent as systemd runs it: Type=notify (READY, WATCHDOG, STOPPING) and the hardened unit."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

UNIT = Path(__file__).resolve().parents[3] / "systemd" / "mlsysops-nodeagent.service"
MAX_EXPOSURE = 4.0


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
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/mlsysops-nodeagent", daemon))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


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
