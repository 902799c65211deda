"""ESP32 family: Wi-Fi, UART, internal temperature, ADC pin, state in NVS."""

import json

import esp32
import machine

from hal._hw import freq as freq
from hal._hw import net_up as net_up
from hal._hw import tcp_open as tcp_open
from hal._hw import uart as _uart

NAME = "esp32"
SENSORS = ("temp", "adc")
FREQS = (80000000, 160000000, 240000000)
FREQ_CAPS = list(FREQS)
_nvs = esp32.NVS("mlsysops")


def freq_ok(hz):
    return hz in FREQS


def sense(name):
    if name == "temp":
        if hasattr(esp32, "mcu_temperature"):
            return esp32.mcu_temperature()
        return round((esp32.raw_temperature() - 32) / 1.8, 1)
    return machine.ADC(machine.Pin(34)).read_u16()


def uart(cfg):
    s = cfg["serial"]
    return _uart(cfg, tx=s.get("tx", 17), rx=s.get("rx", 16), rxbuf=2048)


def load_state():
    buf = bytearray(1024)
    try:
        n = _nvs.get_blob("state", buf)
        st = json.loads(bytes(buf[:n]))
    except (OSError, ValueError):
        return {}
    return st if isinstance(st, dict) else {}


def save_state(st):
    _nvs.set_blob("state", json.dumps(st))
    _nvs.commit()


def reset():
    machine.reset()
