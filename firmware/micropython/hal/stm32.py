"""STM32 (pyboard family): UART or USB-CDC (serial.uart = 0), core temperature and VREF."""

import machine
import pyb

from hal._hw import Uart
from hal._hw import tcp_open as tcp_open
from hal._hw import uart as _uart
from hal._state import load_state as load_state
from hal._state import save_state as save_state

NAME = "stm32"
SENSORS = ("temp", "vref")
_adc = None


def freq(hz=None):
    if hz is None:
        return machine.freq()[0]
    machine.freq(hz)
    return hz


FREQ_CAPS = {"min": 8000000, "max": 216000000, "step": 1000000}


def freq_ok(hz):
    return 8000000 <= hz <= 216000000 and hz % 1000000 == 0


def sense(name):
    global _adc
    if _adc is None:
        _adc = pyb.ADCAll(12, 0x70000)
    return round(_adc.read_core_temp() if name == "temp" else _adc.read_core_vref(), 2)


def uart(cfg):
    if cfg["serial"]["uart"] == 0:
        return Uart(pyb.USB_VCP())
    return _uart(cfg, read_buf_len=2048)  # pyb.UART's name for the receive buffer


async def net_up(cfg):
    return None  # boards with Ethernet bring it up in boot.py (network.LAN)


def reset():
    machine.reset()
