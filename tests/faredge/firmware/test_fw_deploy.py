"""`mlsysops devices flash` against the virtual board (the real MicroPython, WebAssembly): the
firmware compiled for the board's .mpy version, written through raw-paste (or the plain raw
REPL of a board without it), verified, renamed, stale files deleted for good, the config last,
and the board booted into the new version; stock mpremote keeps working on the same board."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from faredge.channels.serial import PyserialPort
from faredge.cli import devices
from faredge.deploy.flasher import FlashOptions
from faredge.deploy.flasher import flash as flash_board
from faredge.deploy.rawrepl import Timeouts
from faredge.deploy.release import MANIFEST, MARKER, Target, build
from faredge.errors import FarEdgeError
from faredge.virtual import VirtualBoard
from faredge.virtual.firmware import firmware_dir
from faredge.virtual.host import NodeHost
from mlsysops.testing import files_below

VERSION = "1.0.1-deploy-test"


@pytest.fixture
def app(tmp_path: Path) -> Path:
    """Our firmware with a new FW_VERSION: the release to deploy."""
    dst = tmp_path / "app"
    shutil.copytree(firmware_dir(), dst, ignore=shutil.ignore_patterns("__pycache__"))
    src = (dst / "app.py").read_text()
    (dst / "app.py").write_text(src.replace('FW_VERSION = "1.0.0"', f'FW_VERSION = "{VERSION}"'))
    return dst


def make_board(node_host: NodeHost, tmp_path: Path, **kw: Any) -> VirtualBoard:
    return VirtualBoard({"id": "fl-1", "interval_ms": 300}, tmp_path / "board", host=node_host, **kw)


@pytest.fixture
def board(node_host: NodeHost, tmp_path: Path) -> Iterator[VirtualBoard]:
    with make_board(node_host, tmp_path) as b:
        assert b.wait_console("boot 1")
        yield b


def flash(board: VirtualBoard, *args: str) -> dict[str, Any]:
    res = CliRunner().invoke(devices, ["flash", board.port, "-o", "json", *args])
    assert res.exit_code == 0, res.output
    return dict(json.loads(res.stdout))


def write_config(tmp_path: Path, board: VirtualBoard, **changes: Any) -> Path:
    path = tmp_path / "device.json"
    path.write_text(json.dumps({**board.config, **changes}))
    return path


def test_first_flash_installs_the_compiled_release_and_boots_it(
    board: VirtualBoard, app: Path, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path, board, interval_ms=400)
    report = flash(board, "--app", str(app), "--config", str(cfg))
    assert report["version"] == VERSION and report["raw_paste"] is True
    assert report["birth"]["fw"] == VERSION and report["birth"]["boot"] == 2
    assert report["written"][-2:] == ["config.json", MARKER]  # identity last, then the digest
    release = build(app, Target((6, 3), "virtual"))
    for f in release.files:  # byte for byte what mpy-cross made for .mpy 6.3
        assert (board.flash / f.name).read_bytes() == f.data, f.name
    assert not (board.flash / "app.py").exists()  # it would shadow app.mpy
    assert json.loads((board.flash / "config.json").read_text())["interval_ms"] == 400
    assert board.state()["boot"] == 2  # the board's own state is kept
    assert json.loads((board.flash / MANIFEST).read_text())["version"] == VERSION
    board.restart()  # deletions persist across a reset
    assert board.wait_console("boot 3")
    assert not (board.flash / "app.py").exists() and (board.flash / "app.mpy").exists()
    assert f"mlsysops fw {VERSION} fl-1 boot 3" in board.console


def test_unchanged_redeploy_writes_nothing_and_a_dropped_module_is_deleted(
    board: VirtualBoard, app: Path
) -> None:
    first = flash(board, "--app", str(app))
    assert "app.mpy" in first["written"]
    interrupts, boots = board.console.count("[raw REPL]"), board.boots
    again = flash(board, "--app", str(app))
    assert again["written"] == [] and again["deleted"] == [] and "app.mpy" in again["skipped"]
    assert again["birth"]["source"] == "running" and again["birth"]["rel"]  # asked, not interrupted
    assert (board.console.count("[raw REPL]"), board.boots) == (interrupts, boots)
    checked = flash(board, "--app", str(app), "--check-files")  # hashes every file on the board
    assert checked["written"] == [] and checked["birth"]["source"] == "frame"
    (app / "telemetry.py").rename(app / "unused_backup.txt")
    (app / "extra.py").write_text("X = 1\n")
    third = flash(board, "--app", str(app), "--no-boot")
    assert third["deleted"] == ["telemetry.mpy"]
    assert set(third["written"]) == {"extra.mpy", "unused_backup.txt", MARKER}
    assert not (board.flash / "telemetry.mpy").exists() and (board.flash / "extra.mpy").exists()


def test_board_without_raw_paste_is_flashed_through_the_plain_raw_repl(
    node_host: NodeHost, tmp_path: Path, app: Path
) -> None:
    with make_board(node_host, tmp_path, raw_paste=False) as b:
        assert b.wait_console("boot 1")
        report = flash(b, "--app", str(app))
        assert report["raw_paste"] is False and report["birth"]["fw"] == VERSION


def test_bad_config_or_app_changes_nothing_on_the_board(
    board: VirtualBoard, app: Path, tmp_path: Path
) -> None:
    before = files_below(board.flash)
    bad = write_config(tmp_path, board, interval_ms=1)
    res = CliRunner().invoke(devices, ["flash", board.port, "--app", str(app), "--config", str(bad)])
    assert res.exit_code == 1 and "interval_ms" in res.output
    (app / "broken.py").write_text("def f(:\n")
    res = CliRunner().invoke(devices, ["flash", board.port, "--app", str(app)])
    assert res.exit_code == 1 and "broken.py" in res.output
    assert files_below(board.flash).keys() == before.keys()
    assert board.console.count("[raw REPL]") == 0  # the firmware was not even interrupted


def test_stock_mpremote_still_works_after_a_deploy(board: VirtualBoard, app: Path) -> None:
    flash(board, "--app", str(app), "--no-boot")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "mpremote",
            "connect",
            board.port,
            "exec",
            "import app; print(app.FW_VERSION)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert res.returncode == 0 and res.stdout.strip() == VERSION, res.stderr


class _CutPowerAt:
    """Progress that cuts the board's power a few ms after the n-th chunk was written."""

    def __init__(self, board: VirtualBoard, n: int, delay: float) -> None:
        self.board, self.n, self.delay, self.seen = board, n, delay, 0

    def planned(self, plan: Any) -> None:
        pass

    def file(self, entry: Any, written: int) -> None:
        self.seen += 1
        if self.seen == self.n:
            threading.Timer(self.delay, self.board.power_cut).start()


@pytest.mark.parametrize(("n", "delay"), [(1, 0.0), (4, 0.003), (9, 0.011), (13, 0.0)])
def test_power_cut_mid_deploy_leaves_a_bootable_board_and_the_next_deploy_completes(
    board: VirtualBoard, app: Path, n: int, delay: float
) -> None:
    port = PyserialPort(board.port, 921600)
    port.open()
    try:
        with pytest.raises(FarEdgeError):
            flash_board(
                port,
                FlashOptions(app, config=board.config),
                _CutPowerAt(board, n, delay),
                timeouts=Timeouts(enter=5, reply=2, run=3),
            )
    finally:
        port.close()
    board.restart()  # power on again: whatever files are there boot
    assert board.wait_console("boot 2", timeout=20), board.console[-800:]
    report = flash(board, "--app", str(app))
    assert report["birth"]["fw"] == VERSION
    assert not [p for p in board.flash.rglob("*.tmp~")]  # no half-written file left
    manifest = json.loads((board.flash / MANIFEST).read_text())
    release = build(app, Target((6, 3), "virtual"))
    assert manifest["files"] == {f.name: f.sha256 for f in release.files}
    for f in release.files:
        assert (board.flash / f.name).read_bytes() == f.data, f.name
