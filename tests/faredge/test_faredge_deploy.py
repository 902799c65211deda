"""The deploy machinery without a board: reads that say what happened, the raw-REPL state
machine against a scripted board on an in-memory pipe (raw-paste with its flow control, the
plain fallback, silence), and the plan (write / skip / delete / config last)."""

from __future__ import annotations

import contextlib
import gc
import io
import json
import os
import struct
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from faredge.channels.memory import MemoryPort, memory_pair
from faredge.deploy.buildcache import BuildCache
from faredge.deploy.channel import Outcome, Reader
from faredge.deploy.device import CHUNK, PRESENT, Device, Write
from faredge.deploy.flasher import FlashOptions, flash, wait_birth
from faredge.deploy.plan import candidates, make_plan
from faredge.deploy.rawrepl import BANNER, DeviceError, RawRepl, ReplError, Timeouts
from faredge.deploy.release import CONFIG, MANIFEST, FileEntry, Release, Target, build, mpy_version
from faredge.errors import Unavailable
from faredge.protocol.frames import Frame, FrameType, encode_frame

FAST = Timeouts(enter=0.5, reply=0.5, run=2.0)


@dataclass
class ScriptedBoard:
    """The board's side of the raw REPL (pyexec.c's behaviour), run in a thread.

    paste: "yes" (R\\x01 + window), "no" (R\\x00), "unknown" (an old board: the request is a line)."""

    port: MemoryPort
    paste: str = "yes"
    window: int = 16
    silent: bool = False
    programs: list[bytes] = field(default_factory=list)
    overrun: bool = False  # the host sent more than the window allowed
    env: dict[str, object] = field(default_factory=dict)

    def run(self) -> None:
        with contextlib.suppress(Unavailable):
            buf = bytearray()
            while True:
                buf += self.port.read(0.05)
                buf = self._step(buf)

    def _step(self, buf: bytearray) -> bytearray:
        if self.silent:
            return bytearray()
        if b"\r\x01" in buf:
            del buf[: buf.index(b"\r\x01") + 2]
            self.port.write(BANNER)
        if buf.startswith(b"\x05A\x01"):
            del buf[:3]
            if self.paste == "yes":
                self.port.write(b"R\x01" + struct.pack("<H", self.window))
                return self._pasted(buf)
            self.port.write(b"R\x00" if self.paste == "no" else b"raw REPL; CTRL-B to exit\r\n>")
        if b"\x04" in buf:
            code = bytes(buf[: buf.index(b"\x04")])
            del buf[: buf.index(b"\x04") + 1]
            self.port.write(b"OK")
            self._run(code)
        return buf

    def _pasted(self, buf: bytearray) -> bytearray:
        code = bytearray()
        remain = self.window
        while True:
            while not buf:
                buf += self.port.read(0.05)
            c = buf.pop(0)
            if c == 0x04:
                self.port.write(b"\x04")
                self._run(bytes(code))
                return buf
            code.append(c)
            remain -= 1
            if remain < 0:
                self.overrun = True
            if remain == 0 and not buf:  # consumed a whole window: grant the next
                remain = self.window
                self.port.write(b"\x01")
            elif remain == 0:
                self.overrun = True  # bytes beyond the window were already waiting

    def _run(self, code: bytes) -> None:
        self.programs.append(code)
        out, err = io.StringIO(), ""
        try:
            with contextlib.redirect_stdout(out):
                exec(code.decode(), self.env)
        except Exception as e:
            err = f"Traceback (most recent call last):\r\n{type(e).__name__}: {e}\r\n"
        self.port.write(out.getvalue().encode() + b"\x04" + err.encode() + b"\x04>")


@contextlib.contextmanager
def board(**kw: object) -> Iterator[tuple[ScriptedBoard, MemoryPort]]:
    host, dev = memory_pair()
    b = ScriptedBoard(dev, **kw)  # type: ignore[arg-type]
    t = threading.Thread(target=b.run, daemon=True)
    t.start()
    try:
        yield b, host
    finally:
        host.close()
        t.join(2)


# -- reads say what happened ------------------------------------------------------------------
def test_reader_finds_a_marker_split_across_reads_and_keeps_what_follows() -> None:
    host, dev = memory_pair()
    r = Reader(host)
    dev.write(b"noise raw RE")
    dev.write(b"PL; CTRL-B to exit\r\n>tail")
    got = r.until(BANNER, 1.0)
    assert got.outcome is Outcome.MARKER and got.data == b"noise " + BANNER
    assert r.exactly(4, 1.0).data == b"tail"


def test_reader_timeout_is_an_outcome_with_what_came() -> None:
    host, dev = memory_pair()
    now = [0.0]

    def clock() -> float:
        now[0] += 0.1
        return now[0]

    dev.write(b"partial")
    got = Reader(host, clock).until(b"\x04", 1.0)
    assert got.outcome is Outcome.TIMEOUT and got.data == b"partial" and not got.found


# -- the state machine --------------------------------------------------------------------------
def test_raw_paste_respects_the_board_window() -> None:
    with board(paste="yes", window=16) as (b, port):
        repl = RawRepl(port, FAST)
        repl.enter()
        program = "x = " + repr("y" * 500) + "\nprint(len(x))"
        assert repl.exec(program) == b"500\r\n" or repl.exec(program).strip() == b"500"
        assert repl.paste is True and not b.overrun
        assert b.programs[-1] == program.encode()


def test_board_without_raw_paste_gets_the_plain_raw_repl_and_is_asked_once() -> None:
    for answer in ("no", "unknown"):
        with board(paste=answer) as (_, port):
            repl = RawRepl(port, FAST)
            repl.enter()
            assert repl.exec("print(6 * 7)").strip() == b"42"
            assert repl.exec("print(1)").strip() == b"1"
            assert repl.paste is False, answer


def test_device_exception_is_a_device_error_and_the_session_goes_on() -> None:
    with board() as (_, port):
        repl = RawRepl(port, FAST)
        repl.enter()
        with pytest.raises(DeviceError, match="ZeroDivisionError"):
            repl.exec("1/0")
        assert repl.exec("print('ok')").strip() == b"ok"


def test_silent_board_is_a_protocol_error_naming_the_step() -> None:
    with board(silent=True) as (_, port):
        repl = RawRepl(port, FAST)
        with pytest.raises(ReplError, match="no raw-REPL banner"):
            repl.enter(attempts=2)
        with pytest.raises(ReplError, match="outside the raw REPL"):
            repl.exec("print(1)")


# -- the birth after the reboot ------------------------------------------------------------------
def test_birth_right_after_the_reboot_banner_is_found_without_a_retransmission() -> None:
    """The REPL's last words ("MPY: soft reboot") end without a frame delimiter, so the first
    frame follows them directly: it is still decoded (one birth sent, none retransmitted)."""
    host, dev = memory_pair()
    birth = {"id": "b1", "fw": "2.0", "boot": 3}
    dev.write(b"MicroPython v1.27.0\r\n>>> \r\nMPY: soft reb")
    dev.write(b"oot\r\n" + encode_frame(Frame(FrameType.BIRTH, 0, json.dumps(birth).encode())))
    got = wait_birth(Reader(host), "2.0", timeout=1.0)
    assert got == {**birth, "source": "frame"}


# -- the plan -----------------------------------------------------------------------------------
def _release(**files: bytes) -> Release:
    return Release("2", tuple(FileEntry(n.replace("__", "/").replace("_", "."), d) for n, d in files.items()))


def test_plan_writes_what_differs_skips_what_matches_deletes_what_was_dropped() -> None:
    rel = Release("2", (FileEntry("app.mpy", b"new"), FileEntry("main.py", b"boot")))
    previous = frozenset({"app.mpy", "main.py", "old.mpy"})
    on_board = {
        "app.mpy": "stale",
        "main.py": FileEntry("main.py", b"boot").sha256,
        "old.mpy": "x",
        "app.py": "source",  # would shadow the new app.mpy
        "state.json": "kept",  # not ours: never touched
        CONFIG: None,
    }
    assert set(candidates(rel, previous)) >= {"app.mpy", "main.py", "old.mpy", "app.py", CONFIG}
    cfg = FileEntry(CONFIG, b"{}")
    plan = make_plan(rel, on_board, previous, cfg)
    assert [f.name for f in plan.write] == ["app.mpy", CONFIG]  # config last
    assert plan.skip == ("main.py",)
    assert plan.delete == ("app.py", "old.mpy")
    same = make_plan(rel, {**on_board, "app.mpy": rel.files[0].sha256, CONFIG: cfg.sha256}, previous, cfg)
    assert not same.write and CONFIG in same.skip


def test_mpy_version_from_sys_implementation() -> None:
    assert mpy_version(774) == (6, 3)  # MicroPython 1.27 (WebAssembly port)
    assert mpy_version(0x0A06 | (2 << 8)) == (6, 2)
    assert mpy_version(None) is None


# -- file operations, the board's helpers run by CPython in a scratch directory ------------------
@pytest.fixture
def device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Device, ScriptedBoard]]:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(gc, "mem_free", lambda: 100_000, raising=False)  # MicroPython's gc has it
    with board(window=256) as (b, port):
        repl = RawRepl(port, FAST)
        repl.enter()
        dev = Device(repl)
        dev.start()
        yield dev, b


def test_small_files_share_a_program_and_each_is_renamed_after_its_hash(
    device: tuple[Device, ScriptedBoard], tmp_path: Path
) -> None:
    dev, b = device
    files = [FileEntry(f"m{i}.mpy", bytes([i]) * 100) for i in range(10)]
    before = len(b.programs)
    dev.apply([Write(f) for f in files])
    assert len(b.programs) - before == 1  # ten files, one round trip
    assert all((tmp_path / f.name).read_bytes() == f.data for f in files)
    assert not list(tmp_path.glob("*.tmp~"))
    assert dev.hashes(["m0.mpy", "gone.mpy"], ["m1.mpy", "absent.py"]) == {
        "m0.mpy": files[0].sha256,
        "gone.mpy": None,
        "m1.mpy": PRESENT,  # only whether it is there: not read
        "absent.py": None,
    }


def test_a_program_failing_mid_file_leaves_the_old_file_and_no_temporary_one(
    device: tuple[Device, ScriptedBoard], tmp_path: Path
) -> None:
    dev, b = device
    (tmp_path / "big.mpy").write_bytes(b"old")
    big = FileEntry("big.mpy", os.urandom(3 * CHUNK))  # incompressible: spans programs
    calls = [0]
    real = b.env["_mw"]

    def failing(s: str, z: int) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise OSError(28)  # ENOSPC, in the second program
        real(s, z)  # type: ignore[operator]

    b.env["_mw"] = failing
    with pytest.raises(DeviceError, match="OSError"):
        dev.apply([Write(big)])
    assert (tmp_path / "big.mpy").read_bytes() == b"old"
    assert not list(tmp_path.glob("*.tmp~"))


# -- the build ----------------------------------------------------------------------------------
def _app(root: Path, **modules: str) -> Path:
    app = root / "app"
    app.mkdir()
    for name, source in modules.items():
        (app / f"{name}.py").write_text(source)
    return app


def test_build_cache_compiles_a_module_once_and_again_when_it_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, main="import app\n", app="X = 1\n")
    cache = BuildCache(tmp_path / "cache")
    first = build(app, Target((6, 3)), cache=cache)
    runs: list[object] = []
    real_run = subprocess.run

    def counting(*a: object, **k: object) -> object:
        runs.append(a)
        return real_run(*a, **k)  # type: ignore[call-overload]

    monkeypatch.setattr(subprocess, "run", counting)
    assert build(app, Target((6, 3)), cache=cache) == first and runs == []
    (app / "app.py").write_text("X = 2\n")
    changed = build(app, Target((6, 3)), cache=cache)
    assert len(runs) == 1 and changed.files != first.files
    assert [f.name for f in changed.files] == ["app.mpy", "main.py"]


def test_a_deploy_removes_what_a_deploy_cut_off_mid_file_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, main="print('v2')\n")
    flash_dir = tmp_path / "board"
    flash_dir.mkdir()
    (flash_dir / MANIFEST).write_text(json.dumps({"version": "1", "files": {"main.py": "x", "old.py": "y"}}))
    (flash_dir / "main.py.tmp~").write_bytes(b"half")  # cut off mid-file, before its rename
    (flash_dir / "old.py.tmp~").write_bytes(b"half")
    monkeypatch.chdir(flash_dir)
    monkeypatch.setattr(gc, "mem_free", lambda: 100_000, raising=False)
    with board(window=256) as (_, port):
        options = FlashOptions(app, boot=False, cache_dir=None)
        report = flash(port, options, timeouts=FAST)
    assert report.plan.write[0].name == "main.py"
    assert (flash_dir / "main.py").read_text() == "print('v2')\n"
    assert not list(flash_dir.glob("*.tmp~"))
