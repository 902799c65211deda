"""The virtual board behaves like a real one where deploy tools can tell: its heap is the
configured size (gc.mem_free() counts down from it, a larger allocation is a MemoryError and the
board goes on), a deletion survives a power loss, `mpremote mount` leaves it usable even when its
heap is small, and both our deploy and stock `mpremote fs cp` fit in a small board."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from faredge.channels.serial import PyserialPort
from faredge.deploy.channel import Reader
from faredge.deploy.flasher import FlashOptions, flash
from faredge.deploy.rawrepl import DeviceError, RawRepl
from faredge.testing import run_mpremote
from faredge.virtual import HostUnavailable, VirtualBoard
from faredge.virtual.board import DEFAULT_HEAP, REFILL_AFTER_S
from faredge.virtual.firmware import firmware_dir
from faredge.virtual.host import NodeHost, find_host, run_script

SMALL = 64 * 1024


@pytest.fixture(scope="module")
def node_host() -> NodeHost:
    try:
        return find_host()
    except HostUnavailable as exc:
        pytest.skip(f"no MicroPython WebAssembly host: {exc}")


@pytest.fixture
def small(node_host: NodeHost, tmp_path: Path) -> Iterator[VirtualBoard]:
    with VirtualBoard({"id": "small-1"}, tmp_path / "board", host=node_host, heap=SMALL) as b:
        assert b.wait_console("boot 1", timeout=30)
        yield b


@pytest.fixture
def repl(small: VirtualBoard) -> Iterator[RawRepl]:
    port = PyserialPort(small.port, 921600)
    port.open()
    try:
        r = RawRepl(Reader(port))
        r.enter()
        yield r
    finally:
        port.close()


def test_heap_is_the_configured_size_and_memory_error_is_real(repl: RawRepl) -> None:
    free, used = map(int, repl.exec("import gc\ngc.collect()\nprint(gc.mem_free(), gc.mem_alloc())").split())
    assert 0.95 * SMALL < free + used <= SMALL  # the heap, less the allocator's own tables
    with pytest.raises(DeviceError, match="MemoryError"):
        repl.exec(f"b = bytearray({SMALL})")
    fill = "k = []\ntry:\n  while True: k.append(bytearray(1024))\nexcept MemoryError:\n  pass\nprint(len(k))"
    taken = int(repl.exec(fill))
    assert 32 < taken < SMALL // 1024  # filled what there was, and no more
    assert repl.exec("k = None\nprint(6 * 7)").strip() == b"42"  # the board goes on


def test_a_script_sees_the_heap_it_is_given(node_host: NodeHost, tmp_path: Path) -> None:
    script = "import gc\ngc.collect()\nprint(gc.mem_free() + gc.mem_alloc())\n"
    res = run_script(tmp_path, script, host=node_host, heap=SMALL)
    assert res.returncode == 0, res.output
    assert 0.95 * SMALL < int(res.output.split()[-1]) <= SMALL  # less the allocator's tables


def test_a_board_has_a_bounded_heap_by_default(node_host: NodeHost, tmp_path: Path) -> None:
    pytest.importorskip("mpremote", reason="mpremote (PyPI) not installed")
    with VirtualBoard({"id": "default-1"}, tmp_path / "board", host=node_host) as b:
        assert b.wait_console("boot 1", timeout=30)
        res = run_mpremote(b.port, "exec", "import gc; print(gc.mem_free() + gc.mem_alloc())")
    assert res.returncode == 0, res.stderr
    assert 0.95 * DEFAULT_HEAP < int(res.stdout.split()[-1]) <= DEFAULT_HEAP


def test_a_deletion_survives_a_power_loss(small: VirtualBoard, repl: RawRepl) -> None:
    repl.exec("f = open('doomed.txt', 'w')\nf.write('x')\nf.close()")
    assert (small.flash / "doomed.txt").exists()
    repl.exec("import os\nos.remove('doomed.txt')")
    small.power_cut()  # no write-back at exit: what the flash has is what each program left
    small.restart()
    assert small.wait_console("boot 2", timeout=30)
    assert not (small.flash / "doomed.txt").exists()
    assert "doomed.txt" not in run_mpremote(small.port, "fs", "ls").stdout


def test_mount_leaves_a_small_board_usable(small: VirtualBoard, tmp_path: Path) -> None:
    pytest.importorskip("mpremote", reason="mpremote (PyPI) not installed")
    local = tmp_path / "local"
    local.mkdir()
    (local / "hello.py").write_text("print('hello', 6 * 7)\n")
    res = run_mpremote(small.port, "mount", str(local), "exec", "import hello")
    assert res.returncode == 0 and "hello 42" in res.stdout, res.stderr
    after = run_mpremote(small.port, "exec", "import gc; print(gc.mem_free() < 65536)")
    assert after.returncode == 0 and after.stdout.strip() == "True", after.stderr


def test_our_deploy_and_mpremote_cp_both_fit_a_small_board(small: VirtualBoard, tmp_path: Path) -> None:
    pytest.importorskip("mpremote", reason="mpremote (PyPI) not installed")
    port = PyserialPort(small.port, 921600)
    port.open()
    try:
        report = flash(port, FlashOptions(firmware_dir(), config=small.config, cache_dir=tmp_path / "cache"))
    finally:
        port.close()
    assert report.birth is not None and report.birth["boot"] == 2
    sources = sorted(str(p) for p in firmware_dir().glob("*.py"))
    res = run_mpremote(small.port, "fs", "cp", *sources, ":")
    assert res.returncode == 0, res.stderr


def _hosts_of(flash: Path) -> list[int]:
    """Pids of the board_host processes serving this flash (from /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"board_host.mjs" in b" ".join(args) and str(flash).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


def test_loaded_interpreters_wait_for_each_reset_and_none_outlives_the_board(
    node_host: NodeHost, tmp_path: Path
) -> None:
    b = VirtualBoard({"id": "standby-1"}, tmp_path / "board", host=node_host).start()
    try:
        assert b.wait_console("boot 1", timeout=30) and b.wait_ready(timeout=30)
        assert len(_hosts_of(b.flash)) == 3  # the firmware, and the next two interpreters, loaded
        b.restart()
        assert b.wait_console("boot 2", timeout=30) and b.wait_ready(timeout=30)
        assert len(_hosts_of(b.flash)) == 3
    finally:
        b.stop()
    assert _hosts_of(b.flash) == []


def test_a_board_stopped_before_its_standbys_started_starts_none_later(
    node_host: NodeHost, tmp_path: Path
) -> None:
    b = VirtualBoard({"id": "standby-2"}, tmp_path / "board", host=node_host).start()
    b.stop()  # at once: the standbys of this boot were not started yet
    time.sleep(REFILL_AFTER_S + 0.3)
    assert _hosts_of(b.flash) == []


def _compiled_ahead(pid: int) -> bool:
    """Whether an interpreter was started with V8's ahead-of-time flags."""
    return b"--no-liftoff" in (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")


def test_the_boot_after_a_repl_session_runs_an_interpreter_compiled_ahead_before_it(
    node_host: NodeHost, small: VirtualBoard
) -> None:
    # A deploy interrupts, holds a short raw-REPL session and reboots: both transitions find an
    # interpreter that loaded (compiled ahead) while the firmware ran, and the session itself
    # shares the CPU with no interpreter being compiled.
    assert small.wait_ready(timeout=30)
    standbys = [s.proc.pid for s in small._standbys]
    assert len(standbys) == 2 and all(_compiled_ahead(pid) for pid in standbys)
    port = PyserialPort(small.port, 921600)
    port.open()
    try:
        r = RawRepl(Reader(port))
        r.enter()
        assert small._proc is not None and small._proc.pid == standbys[0]
        assert sorted(_hosts_of(small.flash)) == sorted(standbys)  # nothing new during the session
        r.boot()
        assert small.wait_console("boot 2", timeout=30)
        assert small._proc.pid == standbys[1]
        assert small.wait_ready(timeout=30)  # and two new ones for the next deploy
        assert len(small._standbys) == 2
    finally:
        port.close()
