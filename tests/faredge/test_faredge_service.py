"""Real services (issue 9, defect 5): the hardened bridge unit, and the provisioned broker config
started the way the packaged Mosquitto starts it: as root, dropping to the `mosquitto` user."""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from faredge.broker import BrokerLayout, BrokerSettings
from faredge.channels.mosquitto import MosquittoProcess, free_port, mosquitto_binary, reload_broker
from faredge.provision import init_broker, provision_device
from faredge.testing import can_login
from mlsysops.testing import wait_for

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "systemd" / "mlsysops-faredge.service"
INSTALLED = "/opt/mlsysops/bin/mlsysops-faredge"  # README: the /opt/mlsysops venv of the install
MAX_EXPOSURE = 4.0


def test_unit_file_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    daemon = shutil.which("mlsysops-faredge") or f"{sys.executable} -m faredge"  # verify checks it exists
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED, daemon))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


def test_exec_start_is_where_the_documented_install_puts_the_daemon() -> None:
    readme = (ROOT / "README.md").read_text()
    venv = re.search(r"python3 -m venv (\S+) && \1/bin/pip install", readme)
    assert venv is not None and f"{venv.group(1)}/bin/mlsysops-faredge" == INSTALLED
    exec_start = re.search(r"^ExecStart=(\S+)", UNIT.read_text(), re.MULTILINE)
    assert exec_start is not None and exec_start.group(1) == INSTALLED
    assert "mlsysops-faredge" in {ep.name for ep in entry_points(group="console_scripts")}


def test_unit_exposure_is_at_most_4() -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed")
    result = subprocess.run(
        [analyze, "security", "--offline=true", str(UNIT)], capture_output=True, text=True, timeout=60
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match.group(1)) <= MAX_EXPOSURE


@pytest.fixture
def service_dir() -> Iterator[Path]:
    """A broker dir the `mosquitto` user can reach (pytest's tmp dirs are 0700 root)."""
    if os.geteuid() != 0:
        pytest.skip("starting Mosquitto as root (so it drops privileges) needs root")
    if mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs the Debian mosquitto package")
    try:
        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.skip("no mosquitto user (Debian package mosquitto)")
    path = Path(tempfile.mkdtemp(prefix="faredge-svc-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path / "broker"
    finally:
        shutil.rmtree(path)


def test_provisioned_broker_config_starts_as_root_and_runs_as_mosquitto(service_dir: Path) -> None:
    layout = BrokerLayout(service_dir)
    port = free_port()
    init_broker(layout, BrokerSettings(port=port))  # what `mlsysops devices provision` writes
    first = provision_device(layout, "svc-1", board="virtual", host="127.0.0.1", port=port)
    conf = layout.conf.read_text()
    assert "user mosquitto" in conf and "autosave_interval 2" in conf
    broker = MosquittoProcess(layout, port)
    broker.start()
    try:
        pid = int(
            wait_for(lambda: layout.pid_file.exists() and layout.pid_file.read_text().strip(), what="pid")
        )
        uid = next(
            line.split()[1]
            for line in Path(f"/proc/{pid}/status").read_text().splitlines()
            if line.startswith("Uid:")
        )
        assert int(uid) == pwd.getpwnam("mosquitto").pw_uid  # dropped privileges
        assert wait_for(lambda: can_login(port, "svc-1", first.password), what="login")
        second = provision_device(layout, "svc-2", board="virtual", host="127.0.0.1", port=port)
        assert second.reloaded and reload_broker(layout)  # SIGHUP: re-read as the mosquitto user
        wait_for(lambda: can_login(port, "svc-2", second.password), what="login after reload")
    finally:
        err = broker.stop()
    assert (layout.data / "mosquitto.db").exists(), err  # persistence written as mosquitto
    assert oct(layout.passwd.stat().st_mode & 0o777) == "0o640"
