"""Serial transport: reliable frames with ACK and retransmission over a UART.

Reliable frames (BIRTH, TWIN_*) wait in `pending` until the bridge's ACK and are resent after
200 ms, doubling, up to 5 tries. A frame that never got through means nobody is listening: the
device sends BIRTH and TWIN_GET again later (backing off up to 30 s), which is how a bridge that
restarted learns about the device. Received reliable frames are ACKed every time and handled
once per (type, seq) within a small window. PING fills silences longer than the interval so
the bridge can tell "quiet" from "gone".

A bridge opens each session with SYNC `{"epoch": n}`: a new epoch means a new numbering on the
other side, so the de-duplication window is cleared (else its first TWIN_DESIRED, seq 0 again,
would be taken for a duplicate) and BIRTH and TWIN_GET are sent again to resync the twin.
"""

import asyncio
import json
from time import ticks_add, ticks_diff, ticks_ms

import frames

KINDS = {
    "birth": frames.BIRTH,
    "telemetry": frames.TELEMETRY,
    "twin/get": frames.TWIN_GET,
    "twin/reported": frames.TWIN_REPORTED,
}
TRIES = 5
RETRY_MS = 200
SEEN = 16


class SerialLink:
    def __init__(self, uart, dev, ping_ms=5000):
        self.uart = uart
        self.dev = dev
        self.ping_ms = ping_ms
        self.dec = frames.Decoder()
        self.seq = 0
        self.pending = {}  # seq -> [wire, due, tries, delay]
        self.seen = []
        self.last_tx = ticks_ms()
        self.lost = 0
        self.bad = 0
        self.rebirth = None
        self.backoff = 1000
        self.epoch = None

    def _write(self, wire, now):
        self.uart.write(wire)
        self.last_tx = now

    def send(self, kind, payload, now=None):
        now = ticks_ms() if now is None else now
        ftype = KINDS[kind]
        seq = self.seq
        self.seq = (seq + 1) & 0xFFFF
        wire = frames.encode(ftype, seq, payload)
        self._write(wire, now)
        if ftype in frames.RELIABLE:
            self.pending[seq] = [wire, ticks_add(now, RETRY_MS), 1, RETRY_MS]
        return seq

    def receive(self, data, now):
        """Feed UART bytes; ACK and dispatch the frames in them."""
        for ftype, seq, payload in self.dec.feed(data):
            if ftype == frames.ACK:
                if self.pending.pop(seq, None):
                    self.backoff = 1000
                continue
            if ftype in frames.RELIABLE:
                self._write(frames.encode(frames.ACK, seq), now)
                key = (ftype << 16) | seq
                if ftype == frames.SYNC:
                    self._sync(payload, key)
                    continue
                if key in self.seen:
                    continue
                self.seen.append(key)
                if len(self.seen) > SEEN:
                    self.seen.pop(0)
            if ftype == frames.TWIN_DESIRED:
                try:
                    msg = json.loads(payload)
                except ValueError:
                    self.bad += 1
                    continue
                self.dev.on_message("twin/desired", msg)

    def _sync(self, payload, key):
        try:
            epoch = json.loads(payload)["epoch"]
        except (ValueError, KeyError, TypeError):
            self.bad += 1
            return
        if epoch != self.epoch:  # a retransmitted SYNC of this epoch changes nothing
            self.epoch = epoch
            self.seen = []
            self.dev.on_connect()

    def tick(self, now):
        """Retransmit what is due, give up after TRIES, heartbeat, re-announce when lost."""
        for seq in list(self.pending):
            p = self.pending[seq]
            if ticks_diff(now, p[1]) < 0:
                continue
            if p[2] >= TRIES:
                del self.pending[seq]
                self.lost += 1
                if self.rebirth is None:
                    self.rebirth = ticks_add(now, self.backoff)
                    self.backoff = min(self.backoff * 2, 30000)
                continue
            self._write(p[0], now)
            p[2] += 1
            p[3] *= 2
            p[1] = ticks_add(now, p[3])
        if self.rebirth is not None and ticks_diff(now, self.rebirth) >= 0:
            self.rebirth = None
            self.dev.on_connect()
        if ticks_diff(now, self.last_tx) >= self.ping_ms:
            self._write(frames.encode(frames.PING, self.seq), now)
            self.seq = (self.seq + 1) & 0xFFFF

    async def run(self):
        self.dev.on_connect()
        while True:
            now = ticks_ms()
            data = self.uart.read()
            try:
                if data:
                    self.receive(data, now)
                self.tick(now)
            except Exception as e:  # one bad frame must not stop the link
                self.bad += 1
                print("serial: error:", repr(e))
            await asyncio.sleep_ms(2 if data else 10)
