"""Deploy and console through the running bridge, which owns the serial port of a virtual board
(our firmware in the real MicroPython): the bridge pauses the device's link, hands the port over
its control socket, and resumes; the device never goes offline in the registry meanwhile."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from faredge.cli import devices
from faredge.config import PortSpec, SerialSettings
from mlsysops.testing import wait_for

virtual = pytest.importorskip("faredge.virtual")
VERSION = "1.0.2-via-bridge"


@pytest.fixture(scope="module")
def node_host() -> Any:
    try:
        return virtual.host.find_host()
    except virtual.HostUnavailable as exc:
        pytest.skip(f"no MicroPython WebAssembly host: {exc}")


@pytest.fixture
def owned_board(node_host: Any, tmp_path: Path, make_bridge: Any, new_config: Any) -> Iterator[Any]:
    board = virtual.VirtualBoard(
        {"id": f"vb{uuid.uuid4().hex[:6]}", "interval_ms": 200}, tmp_path / "vb", host=node_host
    )
    with board:
        settings = SerialSettings(ports=(PortSpec(path=board.port),), scan_interval_s=0.05)
        bridge = make_bridge(new_config(serial=settings))
        dev_id = board.config["id"]
        wait_for(lambda: dev_id in bridge.registry and bridge.registry.get(dev_id).online, timeout=20)
        yield board, bridge


def _app(tmp_path: Path) -> Path:
    dst = tmp_path / "app"
    shutil.copytree(virtual.firmware.firmware_dir(), dst, ignore=shutil.ignore_patterns("__pycache__"))
    src = (dst / "app.py").read_text()
    (dst / "app.py").write_text(src.replace('FW_VERSION = "1.0.0"', f'FW_VERSION = "{VERSION}"'))
    return dst


def test_deploy_through_the_bridge_keeps_the_device_online(owned_board: Any, tmp_path: Path) -> None:
    board, bridge = owned_board
    dev_id = board.config["id"]
    states: list[bool] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            states.append(bridge.registry.get(dev_id).online)
            done.wait(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        res = CliRunner().invoke(
            devices,
            ["--socket", str(bridge.config.control_socket), "deploy", dev_id, "--app", str(_app(tmp_path))],
        )
        assert res.exit_code == 0, res.output
        wait_for(lambda: bridge.registry.get(dev_id).fw == VERSION, what="the new birth", timeout=20)
    finally:
        done.set()
        watcher.join()
    assert len(states) > 10 and all(states)  # never offline while flashed
    assert (board.flash / "app.mpy").exists() and not (board.flash / "app.py").exists()
    before = bridge.router.view(dev_id)["live"]["messages"]
    wait_for(lambda: bridge.router.view(dev_id)["live"]["messages"] > before, what="telemetry again")
    bridge.router.set_desired(dev_id, {"interval_ms": 300})  # the link works after the hand-back
    wait_for(lambda: bridge.router.view(dev_id)["in_sync"], what="twin round trip", timeout=20)


def test_console_through_the_bridge_runs_code_and_reboots_the_firmware(owned_board: Any) -> None:
    board, bridge = owned_board
    dev_id = board.config["id"]
    cli = str(Path(sys.executable).with_name("mlsysops"))
    sock = str(bridge.config.control_socket)
    proc = subprocess.Popen(
        [cli, "devices", "--socket", sock, "console", dev_id, "--linger", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(b"\r\x03\r\x01")  # interrupt the firmware, enter the raw REPL
        proc.stdin.flush()
        seen = b""
        while b"raw REPL; CTRL-B to exit" not in seen:
            chunk = os.read(proc.stdout.fileno(), 4096)
            assert chunk, f"console ended early: {seen!r}"
            seen += chunk
        rest, err = proc.communicate(b"print('console', 6 * 7)\x04", timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert b"console 42" in seen + rest
    wait_for(lambda: board.console.count("boot ") >= 2, what="rebooted into the firmware", timeout=20)
    wait_for(lambda: bridge.registry.get(dev_id).online, timeout=20)


def test_deploy_of_an_unknown_device_is_refused(owned_board: Any) -> None:
    _, bridge = owned_board
    res = CliRunner().invoke(devices, ["--socket", str(bridge.config.control_socket), "deploy", "nope"])
    assert res.exit_code == 1 and "no serial session" in res.output
    assert json.loads(json.dumps(bridge.router.views()))  # the bridge is still serving
