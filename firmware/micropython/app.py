"""The device: boot counter, twin, telemetry sampling and one transport, as asyncio tasks.

`Device` is transport-agnostic: a link calls `on_connect()` when the bridge can hear us (to send
BIRTH and TWIN_GET) and `on_message(kind, msg)` for what the bridge sent; the device calls
`link.send(kind, payload_bytes)`. Everything the device needs from the board comes from the HAL
module, so the same code runs on ESP32, RP2040, STM32 and the virtual board.
"""

import asyncio
import gc
import json
import sys
from time import ticks_diff, ticks_ms

from telemetry import Batcher
from twin import Twin

FW_VERSION = "1.0.0"
RELEASE = "/.mlsysops-release"  # digest of the installed release, written last by a deploy


def _release():
    try:
        with open(RELEASE) as f:
            return f.read(64)
    except OSError:
        return ""


class Device:
    ota = None  # the OTA pointer this boot runs (main.py: ota.boot())
    upd = None  # ota.Updater, loaded on the first OTA message only (heap)

    def __init__(self, cfg, hal):
        self.cfg = cfg
        self.id = cfg["id"]
        self.hal = hal
        self.t0 = ticks_ms()
        st = hal.load_state()  # a corrupt state is ignored, not fatal: the device must boot
        boot = st.get("boot")
        self.boot = (boot if type(boot) is int else 0) + 1
        tw = st.get("twin")
        tw = tw if isinstance(tw, dict) else {}
        saved = tw.get("settings")
        version = tw.get("version")
        settings = {
            "interval_ms": cfg["interval_ms"],
            "batch": cfg["batch"],
            "sensors": cfg.get("sensors") or list(hal.SENSORS),
            "reboot": 0,
            "freq_hz": hal.freq(),
        }
        if isinstance(saved, dict):
            settings.update(saved)
        self.twin = Twin(hal, settings, version if type(version) is int else 0)
        if settings["freq_hz"] != hal.freq():
            try:
                hal.freq(settings["freq_hz"])
            except (ValueError, OSError):
                settings["freq_hz"] = hal.freq()
        self.save()
        limit = 1024 if cfg["transport"] == "serial" else 4096
        self.tel = Batcher(self.id, self.boot, limit)
        self.link = None
        self.bad = 0
        self.rel = _release()

    def save(self):
        t = self.twin
        self.hal.save_state({"boot": self.boot, "twin": {"version": t.version, "settings": t.settings}})

    def _send(self, kind, msg):
        return self.link.send(kind, json.dumps(msg).encode())

    def birth(self):
        return {
            "id": self.id,
            "fw": FW_VERSION,
            "board": self.hal.NAME,
            "boot": self.boot,
            "sensors": list(self.hal.SENSORS),
            "freq": self.hal.freq(),
            "lost": getattr(self.link, "dropped", 0),  # QoS 1 telemetry the ring had to drop
            "caps": {"freq_hz": self.hal.FREQ_CAPS},  # what the bridge may ask for
            "rel": self.rel,  # a deploy that would install the same release has nothing to do
            "mpy": getattr(sys.implementation, "_mpy", 0),  # the .mpy version it runs
        }

    def on_connect(self):
        self._send("birth", self.birth())
        self._send("twin/get", {"id": self.id})
        if self.upd or (self.ota and self.ota.get("rb")):
            self.updater().connected()

    def updater(self):
        if not self.upd:
            from ota import Updater

            self.upd = Updater(self)
        return self.upd

    def on_ota(self, kind, payload):
        self.updater().on(kind, payload)

    def on_message(self, kind, msg):
        if kind != "twin/desired" or not isinstance(msg, dict) or msg.get("id") != self.id:
            self.bad += 1
            return
        report, reboot = self.twin.desired(msg)
        if report is None:
            self.bad += 1
            return
        self.save()
        if hasattr(self.link, "ping_ms"):
            self.link.ping_ms = self.twin.settings["interval_ms"]
        self._send("twin/reported", report)
        if self.ota and self.ota.get("t"):  # a trial release heard back from the bridge: it works
            self.updater().confirm()
        if reboot:
            self.rebooting = asyncio.create_task(self._reboot())

    async def _reboot(self):
        await asyncio.sleep_ms(1000)  # let the report reach the bridge (ACK / PUBACK)
        self.hal.reset()

    def reading(self):
        s = self.twin.settings
        return {
            "up": ticks_diff(ticks_ms(), self.t0) // 1000,
            "mem_free": gc.mem_free(),
            "freq": self.hal.freq(),
            "r": {n: self.hal.sense(n) for n in s["sensors"]},
        }

    async def sample(self):
        while True:
            s = self.twin.settings
            for payload in self.tel.add(self.reading(), s["batch"]):
                self.link.send("telemetry", payload)
            await asyncio.sleep_ms(s["interval_ms"])

    async def run(self):
        if self.cfg["transport"] == "serial":
            from link_serial import SerialLink

            self.link = SerialLink(self.hal.uart(self.cfg), self, self.twin.settings["interval_ms"])
        else:
            from link_mqtt import MqttLink

            self.link = MqttLink(self.cfg, self.hal, self)
        self.sampler = asyncio.create_task(self.sample())
        if self.ota and self.ota.get("t"):
            self.trial = asyncio.create_task(self.updater().trial())
        await self.link.run()
