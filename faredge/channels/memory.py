"""In-memory byte pipes with the serial port interface, for tests of the serial path without a pty."""

from __future__ import annotations

import threading

from faredge.errors import Unavailable


class _Pipe:
    def __init__(self) -> None:
        self.buf = bytearray()
        self.cond = threading.Condition()
        self.closed = False


class MemoryPort:
    """One end of a duplex pipe; closing either end makes the other's reads fail (port vanished)."""

    def __init__(self, rx: _Pipe, tx: _Pipe, path: str) -> None:
        self._rx, self._tx = rx, tx
        self.path = path

    def read(self, timeout: float = 0.02) -> bytes:
        with self._rx.cond:
            if not self._rx.buf and not self._rx.closed:
                self._rx.cond.wait(timeout)
            if self._rx.closed and not self._rx.buf:
                raise Unavailable(f"{self.path}: closed")
            data = bytes(self._rx.buf)
            self._rx.buf.clear()
            return data

    def write(self, data: bytes) -> None:
        with self._tx.cond:
            if self._tx.closed:
                raise Unavailable(f"{self.path}: closed")
            self._tx.buf += data
            self._tx.cond.notify_all()

    def close(self) -> None:
        for pipe in (self._rx, self._tx):
            with pipe.cond:
                pipe.closed = True
                pipe.cond.notify_all()


def memory_pair(path: str = "mem0") -> tuple[MemoryPort, MemoryPort]:
    """(bridge end, device end)."""
    a, b = _Pipe(), _Pipe()
    return MemoryPort(a, b, path), MemoryPort(b, a, path)
