"""RP2040 (Pico / Pico W): UART0, internal temperature on ADC4, Wi-Fi on the W, state in flash."""

import machine

from hal._hw import freq as freq
from hal._hw import net_up as net_up
from hal._hw import tcp_open as tcp_open
from hal._hw import uart as _uart
from hal._state import load_state as load_state
from hal._state import save_state as save_state

NAME = "rp2040"
SENSORS = ("temp", "adc")


FREQ_CAPS = {"min": 48000000, "max": 250000000, "step": 1000000}


def freq_ok(hz):
    return 48000000 <= hz <= 250000000 and hz % 1000000 == 0


def sense(name):
    if name == "temp":
        v = machine.ADC(4).read_u16() * 3.3 / 65535
        return round(27 - (v - 0.706) / 0.001721, 1)
    return machine.ADC(26).read_u16()


def uart(cfg):
    return _uart(cfg, rxbuf=2048)


def reset():
    machine.reset()
