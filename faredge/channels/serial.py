"""Serial adapter (pyserial): the only module importing `serial`.

A port is named by path or by USB identity (vendor/product id, serial number), so a board keeps its
configuration when it re-enumerates under another /dev/ttyACM*. pyserial errors become
`Unavailable`: to the bridge a vanished port and an unreadable one mean the same thing.
"""

from __future__ import annotations

import contextlib
import os

import serial
from serial.tools import list_ports

from faredge.config import PortSpec
from faredge.errors import Unavailable

READ_TIMEOUT_S = 0.02


def resolve(spec: PortSpec) -> str | None:
    """The device path the spec names right now, or None while it is absent."""
    if spec.path:
        return spec.path if os.path.exists(spec.path) else None
    for port in list_ports.comports():
        if spec.vid is not None and port.vid != spec.vid:
            continue
        if spec.pid is not None and port.pid != spec.pid:
            continue
        if spec.serial_number and port.serial_number != spec.serial_number:
            continue
        return str(port.device)
    return None


class PyserialPort:
    """A port, opened by `open()`; read() returns b"" on timeout and raises Unavailable when the
    port is gone."""

    def __init__(self, path: str, baudrate: int) -> None:
        self.path = path
        self._baudrate = baudrate
        # not opened yet: pyserial opens the device when given a port name
        self._serial = serial.Serial(timeout=READ_TIMEOUT_S, write_timeout=1.0, exclusive=True)

    def open(self) -> None:
        """Open the line, exclusively: a second bridge (or a stray terminal program) cannot share it."""
        try:
            self._serial.port = self.path
            self._serial.baudrate = self._baudrate
            self._serial.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise Unavailable(f"cannot open {self.path}: {exc}") from exc

    def read(self) -> bytes:
        try:
            waiting = self._serial.in_waiting
            return bytes(self._serial.read(max(1, waiting)))
        except (serial.SerialException, OSError, TypeError) as exc:
            raise Unavailable(f"{self.path}: {exc}") from exc

    def write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
        except (serial.SerialException, OSError) as exc:
            raise Unavailable(f"{self.path}: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(serial.SerialException, OSError):
            self._serial.close()


def open_port(path: str, spec: PortSpec) -> PyserialPort:
    """The port at `path`, open (Unavailable when it cannot be)."""
    port = PyserialPort(path, spec.baudrate)
    port.open()
    return port
