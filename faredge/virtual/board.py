"""Virtual boards: our firmware in the real MicroPython (WebAssembly), as a process you can hold.

    with VirtualBoard({"id": "vb1", "transport": "serial"}, workdir) as board:
        serial.Serial(board.port, 921600)      # the board's UART, a pseudo-terminal
        board.restart()                        # soft reset: same flash, same port
    with MqttDevice({"id": "m1", "transport": "mqtt", "mqtt": {"host": ..., "port": ...}},
                    workdir) as dev:
        ...                                    # the same firmware, on a real TCP socket

`workdir` defaults to a temporary directory (made after the config was accepted), removed by
`stop()`.
`workdir/flash` is the board's flash: the firmware, config.json, state.json (boot counter,
applied twin) and any `files={"ca.crt": ...}` given (e.g. the CA the MQTT TLS link verifies).
It survives restarts and is written back by the host whenever the firmware saves state.
`workdir/console.log` is the board's console (print output, tracebacks). When the firmware
resets itself (twin `reboot`) the host exits with code 3 and the supervisor starts it again,
like a soft reboot: flash kept, UART pseudo-terminal kept. mpremote's interrupt sequence on the
pty switches the board to its raw REPL (see raw_repl.mjs). The MQTT path runs the same firmware
inside the WebAssembly interpreter, with sockets provided by Node's `net`/`tls`.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import threading
import time
import tty
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

from faredge.virtual.firmware import load_module, stage
from faredge.virtual.host import EXIT_RAW_REPL, EXIT_RAW_RESET, EXIT_RESET, NodeHost, find_host

SOFT_REBOOT_BANNER = "MPY: soft reboot\n"
DEFAULT_HEAP = 1024 * 1024  # a board's RAM, unless told otherwise (more than most boards have)
# What the next interpreter runs after the previous one exited with a given code.
NEXT_MODE = {EXIT_RESET: "--main", EXIT_RAW_REPL: "--raw-repl", EXIT_RAW_RESET: "--raw-repl"}
STANDBYS_AFTER_BOOT = 2  # loaded interpreters kept after a boot: a REPL session, and the boot after it
REFILL_AFTER_S = 0.5  # they start this long after a boot, which would otherwise share the CPU


def _firmware_config_module() -> ModuleType:
    """The firmware's own config rules (plain Python), so the host refuses what the device would."""
    return load_module("config")


def check_config(device_config: Mapping[str, Any], transport: str) -> dict[str, Any]:
    """Validated device config for a virtual board; ValueError naming the field otherwise."""
    cfg = dict(device_config)
    cfg.setdefault("board", "virtual")
    cfg.setdefault("transport", transport)
    if cfg["board"] != "virtual":
        raise ValueError("board: a virtual board runs board 'virtual'")
    if cfg["transport"] != transport:
        raise ValueError(f"transport: this runner drives the {transport} transport")
    try:
        return _firmware_config_module().check(cfg)
    except ValueError as e:
        raise ValueError(str(e)) from None


@dataclass(frozen=True)
class _Standby:
    """An interpreter that has loaded (or is loading) and waits to be told its mode."""

    proc: subprocess.Popen[bytes]
    ready: int  # read end of its ready pipe: one byte once loaded


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()


class _Supervised:
    """One board_host process at a time, restarted on firmware reset, stopped on exit."""

    transport = ""

    def __init__(
        self,
        device_config: Mapping[str, Any],
        workdir: Path | None = None,
        *,
        compiled: bool = False,
        files: Mapping[str, bytes] | None = None,
        host: NodeHost | None = None,
        heap: int = DEFAULT_HEAP,
    ) -> None:
        """`heap`: the board's RAM in bytes (its GC heap): fixed, so gc.mem_free() counts down
        from it and an allocation beyond it is a MemoryError."""
        if heap < 16 * 1024:
            raise ValueError("heap: a board needs at least 16 KiB")
        self.heap = heap
        self.config = check_config(device_config, self.transport)
        self.files = dict(files or {})
        for name in self.files:
            if name.startswith("/") or ".." in Path(name).parts:
                raise ValueError(f"files: {name!r} must be a relative path inside the flash")
        self._own_workdir = workdir is None  # then a temporary one, removed by stop()
        self.workdir = (
            Path(workdir)
            if workdir is not None
            else Path(tempfile.mkdtemp(prefix=f"vboard-{self.config['id']}-"))
        )
        self._compiled = compiled
        self._host = host or find_host()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._standbys: list[_Standby] = []  # the next interpreters, loaded, the next one first
        self._refill: threading.Timer | None = None  # the standbys a boot's successors will use
        self._settled = threading.Event()  # no refill pending
        self._settled.set()
        self._stopping = False
        self._watcher: threading.Thread | None = None
        self.boots = 0  # firmware boots (REPL sessions do not count)

    @property
    def _watcher_name(self) -> str:
        return f"vboard-{self.config['id']}"

    @property
    def flash(self) -> Path:
        return self.workdir / "flash"

    @property
    def console_path(self) -> Path:
        return self.workdir / "console.log"

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.flash.mkdir(exist_ok=True)
        stage(self.flash, compiled=self._compiled)
        for name, data in self.files.items():
            (self.flash / name).parent.mkdir(parents=True, exist_ok=True)
            (self.flash / name).write_bytes(data)
        (self.flash / "config.json").write_text(json.dumps(self.config))
        self._open_channels()
        self._stopping = False
        try:
            self._spawn()
        except OSError:
            self._close_channels()
            raise
        self._watcher = threading.Thread(target=self._watch, name=self._watcher_name, daemon=True)
        self._watcher.start()
        return self

    def restart(self) -> None:
        """Soft reset: the interpreter restarts on the same flash (and the same UART port) and
        boots the firmware, also when the board was sitting in its REPL."""
        with self._lock:
            if self._proc is None or self._stopping:
                raise RuntimeError("restart: the board is not started")
            self._terminate()
            self._append_console(SOFT_REBOOT_BANNER)
            self._spawn_locked()
            if self._watcher is None or not self._watcher.is_alive():  # after a power cut
                self._watcher = threading.Thread(target=self._watch, name=self._watcher_name, daemon=True)
                self._watcher.start()

    def power_cut(self) -> None:
        """Power loss: the interpreter is killed at once, without writing its flash back (the
        flash keeps what the board had written: the firmware's saves, each REPL program's
        files). The board stays off until `restart()` powers it on."""
        with self._lock:
            p = self._proc
            if p is not None and p.poll() is None:
                p.kill()
                p.wait()

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            self._terminate()
            self._end_standbys()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        self._close_channels()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # -- observation ---------------------------------------------------------------------------
    @property
    def console(self) -> str:
        try:
            return self.console_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_console(self, text: str, timeout: float = 10.0, count: int = 1) -> bool:
        """Poll the console until `text` appeared `count` times (False at the deadline)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.console.count(text) >= count:
                return True
            time.sleep(0.02)
        return False

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """Wait until the next interpreters have loaded, so the board answers an interrupt, and
        boots after a REPL session, as soon as a real one would (a benchmark measures the deploy,
        not the simulator warming up). False at the deadline."""
        deadline = time.monotonic() + timeout
        if not self._settled.wait(timeout):
            return False
        with self._lock:  # copies: a standby may be taken (and its pipe closed) meanwhile
            fds = [os.dup(s.ready) for s in self._standbys]
        try:
            return all(select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0] for fd in fds)
        finally:
            for fd in fds:
                os.close(fd)

    def state(self) -> dict[str, Any]:
        """The firmware's persisted state (boot counter, applied twin)."""
        try:
            return json.loads((self.flash / "state.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    @property
    def running(self) -> bool:
        p = self._proc
        return p is not None and p.poll() is None

    # -- internals -----------------------------------------------------------------------------
    def _open_channels(self) -> None:
        pass

    def _close_channels(self) -> None:
        pass

    def _host_args(self, mode: str) -> tuple[list[str], tuple[int, ...]]:
        return [mode], ()

    def _append_console(self, text: str) -> None:
        with self.console_path.open("a") as f:
            f.write(text)

    def _spawn(self) -> None:
        with self._lock:
            self._spawn_locked()

    def _spawn_locked(self, mode: str = "--main") -> None:
        """The next interpreter: a standby told its mode (it has loaded already, as a board's ROM
        has), or a new process when there is none; then what the next transitions will need.

        A deploy or an mpremote command interrupts the firmware, holds a raw-REPL session for a
        fraction of a second and reboots: two transitions in quick succession. So after a boot
        the launcher keeps two standbys, both compiled ahead (V8's optimising compiler, ~0.6 s of
        CPU; such an interpreter answers an interrupt in ~45 ms and boots the firmware in ~70 ms,
        where baseline code boots it in ~0.2-0.3 s). They are started `REFILL_AFTER_S` after the
        boot, not with it: compiling them would take the CPU from the boot itself. A REPL session
        uses the first and leaves the second for the boot that follows; only when none is left
        does it start one, with baseline code (ready in ~0.2 s)."""
        self._cancel_refill()
        proc = self._take_standby(mode)
        self._proc = proc or self._popen(mode)
        if mode == "--main":
            self.boots += 1
            self._refill = threading.Timer(REFILL_AFTER_S, self._refill_standbys)
            self._refill.daemon = True
            self._refill.start()
        else:
            if not self._standbys:
                self._standbys.append(self._start_standby(compiled_ahead=False))
            self._settled.set()

    def _take_standby(self, mode: str) -> subprocess.Popen[bytes] | None:
        while self._standbys:
            standby = self._standbys.pop(0)
            os.close(standby.ready)
            proc = standby.proc
            if proc.poll() is None and proc.stdin is not None:
                try:
                    proc.stdin.write(mode.encode() + b"\n")
                    proc.stdin.close()
                    return proc
                except OSError:  # it died meanwhile
                    pass
            _kill(proc)
        return None

    def _refill_standbys(self) -> None:
        with self._lock:
            if self._stopping or self._refill is not threading.current_thread():
                return  # the board stopped, or moved on and decided again
            self._refill = None
            try:
                while len(self._standbys) < STANDBYS_AFTER_BOOT:
                    self._standbys.append(self._start_standby(compiled_ahead=True))
            finally:
                self._settled.set()

    def _cancel_refill(self) -> None:
        timer, self._refill = self._refill, None
        if timer is not None:
            timer.cancel()
        self._settled.clear()

    def _start_standby(self, *, compiled_ahead: bool) -> _Standby:
        ready_r, ready_w = os.pipe()
        try:
            proc = self._popen("--standby", compiled_ahead=compiled_ahead, ready_fd=ready_w)
        except OSError:
            os.close(ready_r)
            raise
        finally:
            os.close(ready_w)
        return _Standby(proc, ready_r)

    def _popen(
        self, mode: str, *, compiled_ahead: bool = False, ready_fd: int | None = None
    ) -> subprocess.Popen[bytes]:
        args, fds = self._host_args(mode)
        if ready_fd is not None:
            args, fds = [*args, "--ready-fd", str(ready_fd)], (*fds, ready_fd)
        with self.console_path.open("ab") as log:
            return subprocess.Popen(
                self._host.command(
                    self.flash, *args, "--heap", str(self.heap), compiled_ahead=compiled_ahead
                ),
                cwd=self._host.modules_root,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=fds,
                stdin=subprocess.PIPE if mode == "--standby" else subprocess.DEVNULL,
            )

    def _terminate(self) -> None:
        p = self._proc
        if p is None or p.poll() is not None:
            return
        p.terminate()  # the host writes the flash back on SIGTERM
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def _end_standbys(self) -> None:
        self._cancel_refill()
        self._settled.set()
        standbys, self._standbys = self._standbys, []
        for standby in standbys:
            os.close(standby.ready)
            _kill(standby.proc)  # it has not touched the flash or the UART yet

    def _watch(self) -> None:
        """Start the next interpreter when one ends with a reset or a REPL request."""
        while True:
            p = self._proc
            if p is None:
                return
            rc = p.wait()
            with self._lock:
                if self._stopping:
                    return
                if p is not self._proc:
                    continue  # restart() replaced it
                if rc not in NEXT_MODE:
                    self._append_console(f"\n[board host exited with code {rc}]\n")
                    return
                self._append_console(SOFT_REBOOT_BANNER if rc == EXIT_RESET else "[raw REPL]\n")
                self._spawn_locked(NEXT_MODE[rc])


class VirtualBoard(_Supervised):
    """The firmware on the serial transport, its UART on a pseudo-terminal at `.port`."""

    transport = "serial"

    def __init__(
        self,
        device_config: Mapping[str, Any],
        workdir: Path | None = None,
        *,
        raw_paste: bool = True,
        **kw: Any,
    ) -> None:
        """`raw_paste=False` makes the REPL refuse raw-paste mode, like a board older than
        MicroPython 1.14, so clients must fall back to the plain raw REPL."""
        super().__init__(device_config, workdir, **kw)
        self.raw_paste = raw_paste
        self._master: int | None = None
        self._slave: int | None = None
        self.port = ""

    def _open_channels(self) -> None:
        self._master, self._slave = os.openpty()
        # Raw at once: with the default line discipline the kernel would echo the firmware's
        # own frames back to it and translate CR/LF inside binary frames.
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)

    def _close_channels(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                os.close(fd)
        self._master = self._slave = None

    def _host_args(self, mode: str) -> tuple[list[str], tuple[int, ...]]:
        assert self._master is not None
        paste = [] if self.raw_paste else ["--no-raw-paste"]
        return [mode, "--uart-fd", str(self._master), *paste], (self._master,)


class MqttDevice(_Supervised):
    """The firmware on the MQTT transport, talking to the broker of `config['mqtt']`."""

    transport = "mqtt"
