"""Every board HAL imports and answers with stand-ins for machine/esp32/pyb (which the
WebAssembly port lacks), and the virtual HAL's sensors are deterministic."""

import sys


class _Pin:
    def __init__(self, *a):
        pass


class _ADC:
    def __init__(self, ch):
        self.ch = ch

    def read_u16(self):
        return 14000 if self.ch == 4 else 1234


class _UART:
    made = []

    def __init__(self, uid, **kw):
        _UART.made.append((uid, kw))

    def any(self):
        return 2

    def read(self, n):
        return b"ab"[:n]


class _Machine:
    Pin = _Pin
    ADC = _ADC
    UART = _UART
    f = 125000000

    @classmethod
    def freq(cls, hz=None):
        if hz is None:
            return cls.f
        cls.f = hz


class _NVS:
    blob = None

    def __init__(self, ns):
        pass

    def get_blob(self, key, buf):
        if _NVS.blob is None:
            raise OSError(2)
        buf[: len(_NVS.blob)] = _NVS.blob
        return len(_NVS.blob)

    def set_blob(self, key, value):
        _NVS.blob = value.encode() if isinstance(value, str) else bytes(value)

    def commit(self):
        pass


class _Esp32:
    NVS = _NVS

    @staticmethod
    def mcu_temperature():
        return 41


sys.modules["machine"] = _Machine
sys.modules["esp32"] = _Esp32
sys.modules["pyb"] = object()


INTERFACE = (
    "NAME",
    "SENSORS",
    "FREQ_CAPS",
    "freq",
    "freq_ok",
    "sense",
    "uart",
    "load_state",
    "save_state",
    "net_up",
    "tcp_open",
    "reset",
)


def test_every_board_module_provides_the_whole_interface():
    import hal

    for board in ("esp32", "rp2040", "stm32", "virtual"):
        h = hal.load(board)
        missing = [n for n in INTERFACE if not hasattr(h, n)]
        assert not missing, board + " lacks " + ", ".join(missing)


def test_reported_frequency_capabilities_agree_with_freq_ok():
    import hal

    for board in ("esp32", "rp2040", "stm32", "virtual"):
        h = hal.load(board)
        caps = h.FREQ_CAPS
        if isinstance(caps, list):
            assert all(h.freq_ok(f) for f in caps), board
        else:
            lo, hi, step = caps["min"], caps["max"], caps["step"]
            assert h.freq_ok(lo) and h.freq_ok(hi) and h.freq_ok(lo + step), board
            assert not h.freq_ok(lo - step) and not h.freq_ok(hi + step) and not h.freq_ok(lo + 1), board


def test_esp32_hal():
    from hal import esp32 as h

    assert h.sense("temp") == 41 and h.freq_ok(240000000) and not h.freq_ok(100000000)
    assert h.load_state() == {}
    h.save_state({"boot": 3})
    assert h.load_state() == {"boot": 3}


def test_rp2040_hal():
    from hal import rp2040 as h

    assert h.freq() == 125000000
    h.freq(133000000)
    assert _Machine.f == 133000000
    assert 20 < h.sense("temp") < 30 and h.sense("adc") == 1234
    assert h.freq_ok(200000000) and not h.freq_ok(300000000)


def test_stm32_hal_imports():
    from hal import stm32 as h

    assert h.SENSORS == ("temp", "vref") and h.freq_ok(168000000)


def test_hal_load_by_board_name():
    import hal

    assert hal.load("virtual").NAME == "virtual"


def test_virtual_sensors_are_deterministic():
    from hal import virtual as v

    v._n.clear()
    assert [v.sense("temp") for _ in range(3)] == [20.0, 20.5, 21.0]
    assert [v.sense("light") for _ in range(2)] == [0, 37]


def test_uart_options_per_board():
    from hal import esp32, rp2040, stm32

    cfg = {"serial": {"uart": 1, "baud": 921600}}
    _UART.made.clear()
    esp32.uart(cfg)
    rp2040.uart(cfg)
    u = stm32.uart(cfg)
    assert _UART.made == [
        (1, {"baudrate": 921600, "tx": 17, "rx": 16, "rxbuf": 2048}),
        (1, {"baudrate": 921600, "rxbuf": 2048}),
        (1, {"baudrate": 921600, "read_buf_len": 2048}),
    ]
    assert u.read() == b"ab"
