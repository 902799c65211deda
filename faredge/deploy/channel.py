"""A byte channel and a reader whose every read says what happened: data, marker or timeout.

The channel is whatever carries the REPL's bytes: a serial port (`faredge.channels.serial`), a
pseudo-terminal, the bridge's port handed over for a deploy, or an in-memory pipe. Its `read()`
waits briefly and returns b"" when nothing came, so deadlines live here, in one place, measured
on an injectable clock: the protocol never sleeps to let a board "catch up", it waits for the
bytes it expects and is told when they did not come.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol


class ByteChannel(Protocol):
    def read(self) -> bytes: ...  # what arrived, or b"" after a short wait
    def write(self, data: bytes) -> None: ...


class Outcome(enum.Enum):
    MARKER = "marker"  # the expected bytes arrived (they end `data`)
    TIMEOUT = "timeout"  # the deadline passed first (`data` is what came meanwhile)
    DATA = "data"  # some bytes (a read that waits for no marker)


@dataclass(frozen=True)
class Read:
    outcome: Outcome
    data: bytes

    @property
    def found(self) -> bool:
        return self.outcome is Outcome.MARKER


class Reader:
    """Buffered reads over a channel: what follows a marker stays for the next read."""

    def __init__(self, channel: ByteChannel, clock: Callable[[], float] = time.monotonic) -> None:
        self.channel = channel
        self._clock = clock
        self._buf = bytearray()

    def write(self, data: bytes) -> None:
        self.channel.write(data)

    def until(self, marker: bytes, timeout: float) -> Read:
        """Bytes up to and including `marker`, or TIMEOUT with what came before the deadline."""
        deadline = self._clock() + timeout
        start = 0
        while True:
            i = self._buf.find(marker, start)
            if i >= 0:
                end = i + len(marker)
                data = bytes(self._buf[:end])
                del self._buf[:end]
                return Read(Outcome.MARKER, data)
            start = max(0, len(self._buf) - len(marker) + 1)
            if self._clock() >= deadline:
                data = bytes(self._buf)
                self._buf.clear()
                return Read(Outcome.TIMEOUT, data)
            self._buf += self.channel.read()

    def exactly(self, n: int, timeout: float) -> Read:
        """`n` bytes (MARKER: they all came), or TIMEOUT with fewer."""
        deadline = self._clock() + timeout
        while len(self._buf) < n:
            if self._clock() >= deadline:
                data = bytes(self._buf)
                self._buf.clear()
                return Read(Outcome.TIMEOUT, data)
            self._buf += self.channel.read()
        data = bytes(self._buf[:n])
        del self._buf[:n]
        return Read(Outcome.MARKER, data)

    def unread(self, data: bytes) -> None:
        """Put bytes back in front (a reply that turned out to be the start of something else)."""
        self._buf[:0] = data

    def available(self) -> Read:
        """Whatever is buffered or arrives in one channel read (DATA, possibly empty)."""
        self._buf += self.channel.read()
        data = bytes(self._buf)
        self._buf.clear()
        return Read(Outcome.DATA, data)

    def drain(self, max_reads: int = 64) -> bytes:
        """Discard what is pending: buffered, and what the channel has until it is quiet (a
        board streaming output is cut off after `max_reads` reads)."""
        got = bytes(self._buf)
        self._buf.clear()
        for _ in range(max_reads):
            chunk = self.channel.read()
            if not chunk:
                break
            got += chunk
        return got
