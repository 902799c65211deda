"""MicroPython's raw REPL as a state machine over a byte channel.

States: UNKNOWN (whatever the board runs: our firmware's frames, a friendly REPL, a program)
→ `enter()` → RAW (prompt consumed, ready for a program) → `exec()` → RAW … → `leave()` or
`boot()` → UNKNOWN. Every step waits for the bytes the protocol promises (the banner, "OK",
"R\\x01", the Ctrl-D ends of output and error) with a deadline, and says what it got when they
did not come: no fixed sleeps stand in for the board's answer.

A program goes in raw-paste mode (Ctrl-E A Ctrl-A) when the board supports it: the board
names its window, the host sends at most that many bytes before the board's Ctrl-A grants the
next window, so a busy board is never overrun. A board answering "R\\x00" (or not understanding
it at all) gets the plain raw REPL, whose only flow control is the channel's own; the mode is
probed once per session.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from faredge.deploy.channel import ByteChannel, Reader
from faredge.errors import FarEdgeError

BANNER = b"raw REPL; CTRL-B to exit\r\n>"
# Ctrl-C then Ctrl-A, as one run: interrupts a running program (our firmware reads it on its
# UART and drops into the REPL) and enters the raw REPL. A second Ctrl-C helps a program that
# caught the first one.
INTERRUPT = b"\r\x03\r\x01"
RETRY_INTERRUPT = b"\r\x03\x03\r\x01"
PASTE_REQUEST = b"\x05A\x01"
CTRL_A, CTRL_B, CTRL_D = b"\x01", b"\x02", b"\x04"
SOFT_REBOOT = b"soft reboot\r\n"  # the end of "MPY: soft reboot", printed as a board soft-reboots


class ReplError(FarEdgeError):
    """The board did not follow the raw-REPL protocol (or stayed silent) at some step."""

    def __init__(self, step: str, got: bytes) -> None:
        super().__init__(f"raw REPL: {step} (got {got[-120:]!r})")
        self.step = step
        self.got = got


class DeviceError(FarEdgeError):
    """The program ran on the board and raised; `stderr` is its traceback."""

    def __init__(self, stderr: str) -> None:
        last = stderr.strip().splitlines()[-1] if stderr.strip() else "error"
        super().__init__(f"device: {last}")
        self.stderr = stderr


class State(enum.Enum):
    UNKNOWN = "unknown"
    RAW = "raw"


@dataclass(frozen=True)
class Timeouts:
    enter: float = 10.0  # a board interrupted mid-boot, or a virtual one starting its interpreter
    reply: float = 5.0  # "OK", "R\x01", a window grant, the end-of-paste acknowledgement
    run: float = 30.0  # a program's output and error (hashing a file on a slow board)


class RawRepl:
    """exec() programs on a board; raises ReplError (protocol) or DeviceError (the program)."""

    def __init__(
        self, channel: ByteChannel | Reader, timeouts: Timeouts | None = None, *, paste: bool = True
    ) -> None:
        self.reader = channel if isinstance(channel, Reader) else Reader(channel)
        self.t = timeouts or Timeouts()
        self.state = State.UNKNOWN
        # None: not probed yet; False: the board refused raw-paste (or the caller did)
        self.paste: bool | None = None if paste else False

    # -- entering and leaving ------------------------------------------------------------------
    def enter(self, attempts: int = 3) -> None:
        if self.state is State.RAW:
            return
        got = b""
        for i in range(attempts):
            self.reader.drain()
            self.reader.write(INTERRUPT if i == 0 else RETRY_INTERRUPT)
            r = self.reader.until(BANNER, self.t.enter)
            if r.found:
                self.state = State.RAW
                return
            got = r.data
        raise ReplError("no raw-REPL banner after interrupting the board", got)

    def soft_reset(self) -> None:
        """Ctrl-D on an empty raw-REPL line: the board soft-reboots (a fresh heap, main.py not
        run) and comes back to the raw REPL."""
        if self.state is not State.RAW:
            raise ReplError("soft reset outside the raw REPL", b"")
        self.reader.write(CTRL_D)
        for marker in (SOFT_REBOOT, BANNER):
            r = self.reader.until(marker, self.t.enter)
            if not r.found:
                self.state = State.UNKNOWN
                raise ReplError("no raw REPL after the soft reset", r.data)

    def leave(self) -> None:
        """Back to the friendly REPL (Ctrl-B); the board keeps running nothing."""
        self.reader.write(CTRL_B)
        self.state = State.UNKNOWN

    def boot(self) -> None:
        """Soft reboot into the board's main.py: Ctrl-B, then Ctrl-D in the friendly REPL (a
        Ctrl-D in the raw REPL would reboot into the raw REPL again)."""
        self.reader.write(CTRL_B + CTRL_D)
        self.state = State.UNKNOWN

    # -- running programs ----------------------------------------------------------------------
    def exec(self, program: str | bytes, timeout: float | None = None) -> bytes:
        """Run `program`; its stdout, or DeviceError with its traceback."""
        out, err = self.exec_raw(program, timeout)
        if err:
            raise DeviceError(err.decode(errors="replace"))
        return out

    def eval(self, expression: str) -> str:
        return self.exec(f"print(repr({expression}))").decode().strip()

    def exec_raw(self, program: str | bytes, timeout: float | None = None) -> tuple[bytes, bytes]:
        if self.state is not State.RAW:
            raise ReplError("exec outside the raw REPL (enter() first)", b"")
        code = program.encode() if isinstance(program, str) else program
        try:
            if self.paste is not False and self._start_paste():
                self._send_pasted(code)
            else:
                self._send_plain(code)
            return self._follow(self.t.run if timeout is None else timeout)
        except ReplError:
            self.state = State.UNKNOWN  # the next enter() interrupts and resynchronises
            raise

    def _start_paste(self) -> bool:
        self.reader.write(PASTE_REQUEST)
        r = self.reader.exactly(2, self.t.reply)
        if r.data == b"R\x01":
            self.paste = True
            return True
        if r.data == b"R\x00":
            self.paste = False  # understood, not supported
            return False
        # Not understood: the board took Ctrl-E A Ctrl-A as a raw-REPL line and re-prompted.
        self.reader.unread(r.data)
        rest = self.reader.until(BANNER, self.t.reply)
        if not rest.found:
            raise ReplError("no answer to the raw-paste request", rest.data)
        self.paste = False
        return False

    def _send_pasted(self, code: bytes) -> None:
        head = self.reader.exactly(2, self.t.reply)
        if not head.found:
            raise ReplError("no raw-paste window size", head.data)
        (window,) = struct.unpack("<H", head.data)
        remain, i = window, 0
        while i < len(code):
            while remain == 0:
                grant = self.reader.exactly(1, self.t.reply)
                if grant.data == CTRL_A:
                    remain += window
                elif grant.data == CTRL_D:  # the board ends the paste early (a syntax error)
                    self.reader.write(CTRL_D)
                    return
                else:
                    raise ReplError("unexpected byte during raw paste", grant.data)
            part = code[i : i + remain]
            self.reader.write(part)
            i += len(part)
            remain -= len(part)
        self.reader.write(CTRL_D)
        ack = self.reader.until(CTRL_D, self.t.reply)
        if not ack.found:
            raise ReplError("raw paste not acknowledged", ack.data)

    def _send_plain(self, code: bytes) -> None:
        self.reader.write(code + CTRL_D)
        ok = self.reader.exactly(2, self.t.reply)
        if ok.data != b"OK":
            raise ReplError("program not accepted", ok.data)

    def _follow(self, timeout: float) -> tuple[bytes, bytes]:
        out = self.reader.until(CTRL_D, timeout)
        if not out.found:
            raise ReplError("program output did not end", out.data)
        err = self.reader.until(CTRL_D, timeout)
        if not err.found:
            raise ReplError("program error output did not end", err.data)
        prompt = self.reader.until(b">", self.t.reply)
        if not prompt.found:
            raise ReplError("no raw-REPL prompt after the program", prompt.data)
        return out.data[:-1], err.data[:-1]
