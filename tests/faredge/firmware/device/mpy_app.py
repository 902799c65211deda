"""The device (firmware/micropython/app.py) with a fake HAL and a fake link, inside MicroPython."""

import json
import sys

import app
import fakehal

CFG = {
    "id": "d1",
    "board": "virtual",
    "transport": "serial",
    "interval_ms": 1000,
    "batch": 1,
    "serial": {"baud": 115200, "uart": 0},
    "mqtt": {},
}


class Link:
    def __init__(self):
        self.sent = []

    def send(self, kind, payload):
        self.sent.append((kind, json.loads(payload)))
        return True


def _device():
    dev = app.Device(CFG, fakehal)
    dev.link = Link()
    return dev


def test_boot_counter_persisted_and_incremented():
    fakehal.clear()
    assert _device().boot == 1
    assert _device().boot == 2
    assert fakehal.state["boot"] == 2


def test_corrupt_state_boots_with_defaults():
    fakehal.clear()
    fakehal.state.update({"boot": "x", "twin": {"version": "7", "settings": [1]}})
    dev = _device()
    assert dev.boot == 1 and dev.twin.version == 0 and dev.twin.settings["interval_ms"] == 1000
    fakehal.state.clear()
    fakehal.state.update({"twin": "garbage"})
    assert _device().twin.version == 0


def test_connect_sends_birth_then_twin_get():
    fakehal.clear()
    dev = _device()
    dev.on_connect()
    (k1, birth), (k2, get) = dev.link.sent
    assert (k1, k2) == ("birth", "twin/get")
    assert birth == {
        "id": "d1",
        "fw": app.FW_VERSION,
        "board": "fake",
        "boot": 1,
        "sensors": ["temp", "adc"],
        "freq": 160000000,
        "lost": 0,
        "caps": {"freq_hz": [80000000, 160000000]},
        "rel": "",  # no deploy marker on this flash
        "mpy": sys.implementation._mpy,
    }
    assert get == {"id": "d1"}


def test_desired_applied_reported_and_persisted_across_boot():
    fakehal.clear()
    dev = _device()
    dev.on_message(
        "twin/desired", {"id": "d1", "version": 4, "settings": {"interval_ms": 250, "freq_hz": 80000000}}
    )
    kind, rep = dev.link.sent[-1]
    assert kind == "twin/reported" and rep["version"] == 4 and rep["errors"] == {}
    fakehal.freq_now[0] = 160000000  # a reboot resets the clock...
    again = _device()
    assert again.twin.version == 4 and again.twin.settings["interval_ms"] == 250
    assert fakehal.freq_now[0] == 80000000  # ...and boot applies the persisted setting


def test_desired_for_another_device_is_dropped():
    fakehal.clear()
    dev = _device()
    dev.on_message("twin/desired", {"id": "other", "version": 1, "settings": {"batch": 2}})
    assert dev.link.sent == [] and dev.bad == 1 and dev.twin.version == 0


def test_reading_has_memory_frequency_uptime_and_enabled_sensors():
    fakehal.clear()
    dev = _device()
    dev.twin.settings["sensors"] = ["adc"]
    r = dev.reading()
    assert r["r"] == {"adc": 512} and r["freq"] == 160000000
    assert r["mem_free"] > 0 and r["up"] >= 0


class Upd:
    def __init__(self):
        self.calls = []

    def on(self, kind, payload):
        self.calls.append((kind, payload))

    def confirm(self):
        self.calls.append(("confirm",))

    def connected(self):
        self.calls.append(("connected",))


def test_ota_messages_go_to_the_updater_and_a_trial_confirms_on_desired():
    fakehal.clear()
    dev = _device()
    dev.upd = Upd()
    dev.on_ota("chunk", b"1 0 0\n")
    dev.on_message("twin/desired", {"id": "d1", "version": 1, "settings": {}})
    assert dev.upd.calls == [("chunk", b"1 0 0\n")]  # not on a trial: nothing to confirm
    dev.ota = {"s": "a", "t": 2}
    dev.on_message("twin/desired", {"id": "d1", "version": 2, "settings": {}})
    dev.on_connect()
    assert dev.upd.calls[1:] == [("confirm",), ("connected",)], dev.upd.calls
