"""Over-the-air update: signed manifest, chunks over MQTT, A/B slots, confirm or roll back.

Flash layout: the serial install in `/` (with the boot loader main.py), OTA releases in the
slot directories /.ota/a and /.ota/b, and the pointer /ota.json: active slot `s` ("" = the
serial install), its release `r` and version `v`, trial state `t` (1: not booted yet, 2: booted,
not confirmed), the slot to fall back to (`p`, `pr`, `pv`), the highest release ever installed
`hi` (a manifest must be above it: no replay, no downgrade), the serial release marker `base`
it was installed over, and `rb`, a release rolled back.

An update: manifest (HMAC-SHA256 with the device key, for this device, above `hi`) -> each file
fetched in chunks of at most CHUNK bytes (AHEAD requests in flight, answers taken in order)
into `<slot>/<name>.part`, hashed as it grows, renamed
when complete and matching (a resumed download re-hashes what the part holds, a file already in
the slot with the right hash is kept) -> every file re-read and checked -> the pointer written
(temporary file + rename) -> reset. `boot()` makes the first boot of a release a trial; the app
confirms it (`confirm()`) once the bridge answered it after a reconnect, and a second boot
without that confirmation goes back to the previous slot.
"""

import asyncio
import json
import os
from hashlib import sha256
from time import ticks_diff, ticks_ms

from otaboot import ROOT, mark, pointer, save

CHUNK = 2048  # bytes per request: the board's MQTT packets are at most 4096
AHEAD = 3  # chunk requests in flight: the next ones travel while the board writes one
RETRY_MS = 2000
TRIES = 5  # bad chunks in a row before the update fails
TRIAL_MS = 120000  # a trial not confirmed by then resets (and rolls back on that boot)


def _hmac(key, msg):
    key = key + bytes(64 - len(key))
    inner = sha256(bytes(b ^ 0x36 for b in key))
    inner.update(msg)
    outer = sha256(bytes(b ^ 0x5C for b in key))
    outer.update(inner.digest())
    return outer.digest().hex().encode()


def _same(a, b):
    d = len(a) ^ len(b)
    for i in range(min(len(a), len(b))):
        d |= a[i] ^ b[i]
    return not d


def _sha(path):
    h = sha256()
    try:
        with open(path, "rb") as f:
            while True:
                b = f.read(512)
                if not b:
                    return h.digest().hex()
                h.update(b)
    except OSError:
        return None


def _mkdirs(path):
    d = ""
    for part in path.split("/")[1:-1]:
        d += "/" + part
        if not _exists(d):
            os.mkdir(d)


def _exists(path):
    try:
        os.stat(path)
    except OSError:
        return False
    return True


def _prune(d, keep, rel=""):
    for e in os.ilistdir(d + rel):
        name = rel + e[0]
        if e[1] == 0x4000:
            _prune(d, keep, name + "/")
        elif name not in keep:
            os.remove(d + name)


def _files(m):
    """The manifest's [name, size, sha256] rows, or None when one is malformed or unsafe."""
    f = m.get("f")
    if not isinstance(f, list):
        return None
    for e in f:
        if not (isinstance(e, list) and len(e) == 3 and isinstance(e[0], str) and type(e[1]) is int):
            return None
        n = e[0]
        if not n or n[0] in "/." or "/." in n or e[1] < 0 or not isinstance(e[2], str) or len(e[2]) != 64:
            return None
    return f


class Updater:
    """One device's update in progress (created on the first OTA message, kept by the app)."""

    def __init__(self, dev):
        self.dev = dev
        self.key = bytes.fromhex(dev.cfg.get("ota_key") or "")
        self.m = None  # the manifest being installed
        self.i = 0  # its file being fetched
        self.off = 0
        self.h = None
        self.bad = 0
        self.t = 0
        self.task = None

    def _status(self, st, r, why=None):
        msg = {"id": self.dev.id, "r": r, "st": st}
        if why:
            msg["why"] = why
        self.dev._send("ota/status", msg)

    def on(self, kind, payload):
        if kind == "manifest":
            self.manifest(payload)
        elif kind == "chunk":
            self.chunk(payload)

    def manifest(self, payload):
        p = self.dev.ota or {}
        if p.get("t") or not payload:
            return  # a trial (the bridge sends it again once confirmed), or the retained one cleared
        body = payload[64:]
        try:
            m = json.loads(body)
            r = m["r"]
        except (ValueError, KeyError, TypeError):
            m, r = None, 0
        why = None
        if not self.key or not _same(_hmac(self.key, body), payload[:64]):
            why = "signature"
        elif not isinstance(m, dict):
            why = "manifest"
        elif m.get("id") != self.dev.id:
            why = "device"
        elif type(r) is not int or r <= p.get("hi", 0):
            if r == p.get("hi"):
                return  # the retained manifest of what it installed last: nothing to do
            why = "replay"
        elif _files(m) is None:
            why = "manifest"
        if why:
            return self._status("failed", r, why)
        if self.m and self.m["r"] == r:
            return self._request()  # the same release again: resume
        self.m = m
        self.slot = "b" if p.get("s") == "a" else "a"
        self.dir = ROOT + self.slot + "/"
        self.i = 0
        self._status("downloading", r)
        self._next()
        if not self.task:
            self.task = asyncio.create_task(self._retry())

    def _next(self):
        """Open the next file that still needs data (resuming its part), or install."""
        f = self.m["f"]
        while self.i < len(f):
            name, size, h = f[self.i]
            if _sha(self.dir + name) == h:
                self.i += 1
                continue
            part = self._part()
            self.h = sha256()
            self.off = 0
            try:
                with open(part, "rb") as fp:
                    while True:
                        b = fp.read(512)
                        if not b:
                            break
                        self.h.update(b)
                        self.off += len(b)
            except OSError:
                _mkdirs(part)
                open(part, "wb").close()
            if self.off == size and self.h.digest().hex() == h:
                os.rename(part, self.dir + name)
                self.i += 1
                continue
            if self.off >= size:  # not what the manifest says: fetch it again
                os.remove(part)
                self.h = sha256()
                self.off = 0
            self.bad = 0
            return self._request()
        self._install()

    def _part(self):
        e = self.m["f"][self.i]
        return self.dir + e[0] + "." + e[2][:8] + ".part"  # never resumes another release's file

    def _complete(self):
        name, _, h = self.m["f"][self.i]
        part = self._part()
        if self.h.digest().hex() != h:
            os.remove(part)
            self._fail("hash:" + name)
            return False
        os.rename(part, self.dir + name)
        self.i += 1
        return True

    def _request(self):
        """Ask for the next AHEAD chunks of the file (again, when an answer is overdue)."""
        if self.m:
            self.t = ticks_ms()
            for k in range(AHEAD):
                self._ask(self.off + k * CHUNK)

    def _ask(self, o):
        size = self.m["f"][self.i][1]
        if o < size:
            req = {"id": self.dev.id, "r": self.m["r"], "f": self.i, "o": o, "n": min(CHUNK, size - o)}
            self.dev._send("ota/get", req)

    def chunk(self, payload):
        m = self.m
        nl = payload.find(b"\n")
        try:
            r, i, o = [int(x) for x in payload[:nl].decode().split()]
        except (ValueError, UnicodeError):
            return
        if not m or r != m["r"] or i != self.i or o != self.off:
            return  # a duplicate or late answer
        size = m["f"][i][1]
        data = payload[nl + 1 :]
        if len(data) != min(CHUNK, size - o):
            self.bad += 1
            if self.bad >= TRIES:
                return self._fail("chunk")
            return self._request()
        with open(self._part(), "ab") as f:
            f.write(data)
        self.h.update(data)
        self.off += len(data)
        self.bad = 0
        self.t = ticks_ms()
        if self.off < size:
            return self._ask(self.off + (AHEAD - 1) * CHUNK)  # keep AHEAD in flight
        if self._complete():
            self._next()

    def _fail(self, why):
        self._status("failed", self.m["r"], why)
        self.m = None

    def _install(self):
        m = self.m
        r = m["r"]
        self._status("verifying", r)
        keep = {}
        for e in m["f"]:
            keep[e[0]] = 1
        _prune(self.dir, keep)
        for e in m["f"]:
            if _sha(self.dir + e[0]) != e[2]:
                return self._fail("hash:" + e[0])
        self.dev.save()  # the slot durable before the pointer names it
        p = self.dev.ota or {}
        save(
            {
                "s": self.slot,
                "r": r,
                "v": m["v"],
                "t": 1,
                "p": p.get("s", ""),
                "pr": p.get("r", 0),
                "pv": p.get("v", ""),
                "hi": r,
                "base": mark(),
            }
        )
        self.dev.save()
        self.m = None
        self._status("installed", r)
        self.dev.rebooting = asyncio.create_task(self.dev._reboot())

    def connected(self):
        """After a (re)connect: report a rollback, resume a download (MQTT only)."""
        if self.dev.cfg["transport"] != "mqtt":
            return
        p = self.dev.ota or {}
        if p.get("rb"):
            self._status("rolled_back", p["rb"])
        self._request()

    def confirm(self):
        """The trial release works: the bridge answered it after the reconnect."""
        p = pointer()
        p["t"] = 0
        save(p)
        self.dev.save()
        self.dev.ota = p
        self._status("confirmed", p.get("r", 0))

    async def _retry(self):
        """A request without an answer (lost chunk, broker away) is sent again."""
        while self.m:
            if ticks_diff(ticks_ms(), self.t) > RETRY_MS:
                self._request()
            await asyncio.sleep_ms(200)
        self.task = None

    async def trial(self):
        await asyncio.sleep_ms(TRIAL_MS)
        if (self.dev.ota or {}).get("t"):
            print("ota: trial not confirmed, resetting")
            self.dev.hal.reset()
