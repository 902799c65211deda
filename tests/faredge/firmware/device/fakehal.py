"""A HAL for device unit tests: every board call recorded, nothing touches hardware."""

NAME = "fake"
SENSORS = ("temp", "adc")
FREQ_CAPS = [80000000, 160000000]
calls = []
state = {}
freq_now = [160000000]


def freq(hz=None):
    if hz is not None:
        if hz == 123000000:
            raise ValueError("PLL cannot make it")
        calls.append(("freq", hz))
        freq_now[0] = hz
    return freq_now[0]


def freq_ok(hz):
    return hz in (80000000, 123000000, 160000000, 240000000)


def sense(name):
    return {"temp": 21.5, "adc": 512}[name]


def load_state():
    return dict(state)


def save_state(st):
    state.clear()
    state.update(st)


def reset():
    calls.append(("reset",))


def clear():
    del calls[:]
    state.clear()
    freq_now[0] = 160000000
