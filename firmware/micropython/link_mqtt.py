"""MQTT transport: topics of docs/faredge-protocol.md, reconnect with backoff, last will.

On every (re)connect: CONNECT with the retained `status` offline will, SUBSCRIBE to
`twin/desired` first, retained `status` online, then the device's BIRTH and TWIN_GET (the
broker handles packets of one connection in order, so the subscription is in place before the
bridge answers). Reconnects back off exponentially (1 s .. 60 s) with random jitter so a fleet
does not hammer a broker that just came back. QoS 1 publications not yet acknowledged when the
link died are resent (DUP) on the next connection.

Store and forward: with `qos_telemetry` 1, telemetry produced while the link is down (or while
older telemetry still waits) goes to a bounded ring in RAM (RING messages, RING_BYTES bytes) and
is published in order right after the next BIRTH. When the ring is full the oldest message is
dropped and counted in `dropped`, which every BIRTH reports as `lost`: a loss is never silent.
"""

import asyncio
import json
from random import getrandbits
from time import ticks_diff, ticks_ms

import mqtt

CONNECT_MS = 10000
RING = 64
RING_BYTES = 8192


class MqttLink:
    def __init__(self, cfg, hal, dev):
        self.cfg = cfg
        self.m = cfg["mqtt"]
        self.hal = hal
        self.dev = dev
        self.base = "mlsysops/v1/dev/" + cfg["id"] + "/"
        self.s = None
        self.inflight = {}
        self.pid = 0
        self.bad = 0
        self.connects = 0
        self.ring = []
        self.ring_bytes = 0
        self.dropped = 0

    def send(self, kind, payload, now=None):
        """Publish if connected; QoS 1 telemetry waits in the ring otherwise (False: not sent yet).

        Births and twin messages need no ring: each (re)connect sends BIRTH and TWIN_GET, and
        the bridge answers with the full desired state.
        """
        s = self.s
        qos = self.m["qos_telemetry"] if kind == "telemetry" else 1
        if kind == "telemetry" and qos and (s is None or not s.up or self.ring):
            self._keep(payload)
            return False
        if s is None or not s.up:
            return False
        try:
            s.publish(self.base + kind, payload, ticks_ms() if now is None else now, qos)
        except OSError:  # the connection just died: the session loop notices and reconnects
            if kind == "telemetry" and qos:
                self._keep(payload)
            return False
        return True

    def _keep(self, payload):
        self.ring.append(payload)
        self.ring_bytes += len(payload)
        while len(self.ring) > RING or self.ring_bytes > RING_BYTES:
            self.ring_bytes -= len(self.ring.pop(0))
            self.dropped += 1

    def _forward(self, s, now):
        """Publish what the ring kept, oldest first (after BIRTH: the bridge knows us again)."""
        topic = self.base + "telemetry"
        ring, self.ring, self.ring_bytes = self.ring, [], 0
        for payload in ring:
            s.publish(topic, payload, now, 1)

    def _status(self, online):
        return json.dumps({"id": self.cfg["id"], "online": online}).encode()

    async def _session(self):
        m = self.m
        await self.hal.net_up(self.cfg)
        conn = await self.hal.tcp_open(m["host"], m["port"], m.get("tls", False), m.get("ca"))
        try:
            now = ticks_ms()
            s = mqtt.Session(conn, now, m["keepalive"])
            will = (self.base + "status", self._status(False), 1, True)
            s.send(mqtt.connect(self.cfg["id"], m["keepalive"], m.get("user"), m.get("password"), will), now)
            while not s.up:
                s.poll(ticks_ms())
                if ticks_diff(ticks_ms(), now) > CONNECT_MS:
                    raise mqtt.MqttError("no CONNACK")
                await asyncio.sleep_ms(10)
            now = ticks_ms()
            for p in self.inflight.values():  # resend what the dead link never acknowledged
                p[1] = now
            s.inflight = self.inflight
            s.pid = self.pid
            for kind in ("twin/desired", "ota/manifest", "ota/chunk"):
                s.subscribe(self.base + kind, 1, now)
            s.publish(self.base + "status", self._status(True), now, 1, True)
            self.s = s
            self.connects += 1
            self.dev.on_connect()
            self._forward(s, now)
            desired = self.base + "twin/desired"
            ota = self.base + "ota/"
            while True:
                for topic, payload in s.poll(ticks_ms()):
                    if topic.startswith(ota):
                        self.dev.on_ota(topic[len(ota) :], payload)
                        continue
                    try:
                        msg = json.loads(payload) if topic == desired else None
                    except ValueError:
                        msg = None
                    if msg is None:
                        self.bad += 1
                    else:
                        self.dev.on_message("twin/desired", msg)
                await asyncio.sleep_ms(10)
        finally:
            if self.s:
                self.pid = self.s.pid
            self.s = None
            conn.close()

    async def run(self):
        backoff = 1000
        while True:
            try:
                await self._session()
            except Exception as e:  # whatever broke the session: reconnect
                print("mqtt: link down:", repr(e))
            if self.connects:
                backoff = 1000
                self.connects = 0
            await asyncio.sleep_ms(backoff + getrandbits(10) * backoff // 2048)
            backoff = min(backoff * 2, 60000)
