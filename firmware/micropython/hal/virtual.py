"""The virtual board: the WebAssembly MicroPython run by faredge/virtual/board_host.mjs.

The host registers the `_vboard` JS module: UART bytes to and from the pseudo-terminal, TCP
sockets through Node's `net`/`tls`, reset, and write-back of the in-memory filesystem. Sensors
are deterministic functions of the sample number, so tests can predict every reading.
"""

import asyncio

import _vboard

from hal._state import load_state as load_state
from hal._state import save_state as _save

NAME = "virtual"
SENSORS = ("temp", "light", "vbat")
FREQS = (80000000, 160000000, 240000000)
FREQ_CAPS = list(FREQS)
_freq = [160000000]
_n = {}


def freq(hz=None):
    if hz is not None:
        _freq[0] = hz
    return _freq[0]


def freq_ok(hz):
    return hz in FREQS


def sense(name):
    n = _n.get(name, 0)
    _n[name] = n + 1
    if name == "temp":
        return 20 + (n % 10) / 2
    if name == "light":
        return (n * 37) % 1024
    return 3.3 - (n % 5) / 100


def save_state(st):
    _save(st)
    _vboard.sync()


class _Uart:
    def read(self):
        d = _vboard.uart_read()
        return bytes(d) if d else None

    def write(self, data):
        _vboard.uart_write(data.hex())


def uart(cfg):
    return _Uart()


class _Conn:
    def __init__(self, cid):
        self.cid = cid

    def read(self):
        d = _vboard.tcp_read(self.cid)
        if d is None:
            raise OSError(104)
        return bytes(d) if d else b""

    def write(self, data):
        if not _vboard.tcp_write(self.cid, data.hex()):
            raise OSError(104)

    def close(self):
        _vboard.tcp_close(self.cid)


async def net_up(cfg):
    return None


async def tcp_open(host, port, tls=False, ca=None):
    cid = _vboard.tcp_open(host, port, bool(tls), ca or "")
    while True:
        st = _vboard.tcp_state(cid)
        if st > 0:
            return _Conn(cid)
        if st < 0:
            _vboard.tcp_close(cid)
            raise OSError(111)  # ECONNREFUSED
        await asyncio.sleep_ms(5)


def reset():
    _vboard.reset()
