"""OTA download and install (firmware/micropython/ota.py) inside MicroPython, on its own flash:
signature, device, replay and file-name checks; chunks fetched, truncated, resumed; the slot
verified before the pointer names it."""

import json
import os
from hashlib import sha256

import ota
import otaboot

KEY = "11" * 32
FILES = [("app.py", b"FW_VERSION = '9'\n" * 1000), ("hal/x.py", b"X = 1\n"), ("empty.py", b"")]


def _rm(path):
    try:
        if os.stat(path)[0] & 0x4000:
            for e in os.ilistdir(path):
                _rm(path + "/" + e[0])
            os.rmdir(path)
        else:
            os.remove(path)
    except OSError:
        pass


def _clean():
    _rm("/.ota")
    _rm("/ota.json")


class Dev:
    def __init__(self, ota_ptr=None, key=KEY):
        self.id = "d1"
        self.cfg = {"ota_key": key, "transport": "mqtt"}
        self.ota = ota_ptr or {}
        self.sent = []
        self.saves = 0
        self.rebooted = 0

    def _send(self, kind, msg):
        self.sent.append((kind, msg))

    def save(self):
        self.saves += 1

    async def _reboot(self):
        self.rebooted += 1

    def statuses(self):
        return [(m["st"], m.get("why")) for k, m in self.sent if k == "ota/status"]

    def requests(self):
        out = [m for k, m in self.sent if k == "ota/get"]
        self.sent = [x for x in self.sent if x[0] != "ota/get"]
        return out


def manifest(r=1, dev="d1", files=FILES, key=KEY, version="9"):
    f = [[n, len(d), sha256(d).digest().hex()] for n, d in files]
    body = json.dumps({"id": dev, "r": r, "v": version, "f": f}).encode()
    return ota._hmac(bytes.fromhex(key), body) + body


def chunk(q, data):
    return "{} {} {}\n".format(q["r"], q["f"], q["o"]).encode() + data


def serve(upd, dev, files=FILES, cut=None):
    """Answer every chunk request like the bridge; `cut(q, data)` may spoil one answer."""
    for _ in range(500):
        reqs = dev.requests()
        if not reqs:
            return
        for q in reqs:  # in order, as the broker delivers them
            data = files[q["f"]][1][q["o"] : q["o"] + q["n"]]
            upd.chunk(chunk(q, cut(q, data) if cut else data))


def test_hmac_is_rfc4231_case_2():
    got = ota._hmac(b"Jefe", b"what do ya want for nothing?")
    assert got == b"5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843", got


def test_update_fills_the_inactive_slot_then_switches_the_pointer():
    _clean()
    dev = Dev()
    upd = ota.Updater(dev)
    upd.manifest(manifest(r=3))
    serve(upd, dev)
    assert dev.statuses() == [("downloading", None), ("verifying", None), ("installed", None)], dev.sent
    for name, data in FILES:
        with open("/.ota/a/" + name, "rb") as f:
            assert f.read() == data, name
    p = otaboot.pointer()
    assert (p["s"], p["r"], p["v"], p["t"], p["hi"], p["p"]) == ("a", 3, "9", 1, 3, ""), p
    assert dev.saves == 2 and upd.m is None
    names = [e[0] for e in os.ilistdir("/.ota/a")]
    assert names and not [n for n in names if "part" in n], names


def test_chunks_are_bounded_and_a_few_requested_ahead():
    _clean()
    dev = Dev()
    upd = ota.Updater(dev)
    upd.manifest(manifest())
    first = [(q["f"], q["o"], q["n"]) for q in dev.requests()]
    assert first == [(0, k * ota.CHUNK, ota.CHUNK) for k in range(ota.AHEAD)], first
    seen = list(first)
    q = {"r": 1, "f": 0, "o": 0}
    upd.chunk(chunk(q, FILES[0][1][: ota.CHUNK]))  # one answer: one more request, AHEAD - 1 beyond
    more = [(q["f"], q["o"], q["n"]) for q in dev.requests()]
    assert more == [(0, ota.AHEAD * ota.CHUNK, ota.CHUNK)], more
    seen += more
    assert all(n <= ota.CHUNK for _, _, n in seen), seen


def test_refused_manifests_change_nothing():
    _clean()
    otaboot.save({"s": "a", "r": 5, "v": "5", "hi": 5, "base": otaboot.mark()})
    cases = [
        (manifest(r=6, key="22" * 32), "signature"),
        (manifest(r=6, dev="d2"), "device"),
        (manifest(r=4), "replay"),
        (manifest(r=6, files=[("../boot.py", b"x")]), "manifest"),
        (manifest(r=6, files=[("/main.py", b"x")]), "manifest"),
        (manifest(r=6, files=[(".mlsysops-release", b"x")]), "manifest"),
        (b"0" * 64 + b"not json", "signature"),
    ]
    for payload, why in cases:
        dev = Dev(otaboot.pointer())
        ota.Updater(dev).manifest(payload)
        assert dev.statuses() == [("failed", why)], (why, dev.sent)
        assert not dev.requests()
    assert otaboot.pointer()["r"] == 5
    for quiet in (manifest(r=5), b""):  # the retained manifest of what it runs, or that one cleared
        dev = Dev(otaboot.pointer())
        ota.Updater(dev).manifest(quiet)
        assert not dev.sent
    dev = Dev(otaboot.pointer(), key="")
    ota.Updater(dev).manifest(manifest(r=6))
    assert dev.statuses() == [("failed", "signature")]


def test_the_next_release_goes_to_the_other_slot():
    _clean()
    otaboot.save({"s": "a", "r": 5, "v": "5", "hi": 5, "base": otaboot.mark()})
    dev = Dev(otaboot.pointer())
    upd = ota.Updater(dev)
    upd.manifest(manifest(r=6))
    serve(upd, dev)
    p = otaboot.pointer()
    assert (p["s"], p["p"], p["pr"], p["pv"]) == ("b", "a", 5, "5"), p


def test_truncated_chunk_is_asked_again_and_too_many_fail():
    _clean()
    dev = Dev()
    upd = ota.Updater(dev)
    upd.manifest(manifest())
    spoiled = []

    def once(q, data):
        if not spoiled:
            spoiled.append(q)
            return data[:-1]
        return data

    serve(upd, dev, cut=once)
    assert ("installed", None) in dev.statuses()
    _clean()
    dev = Dev()
    upd = ota.Updater(dev)
    upd.manifest(manifest())
    serve(upd, dev, cut=lambda q, d: d[:10])
    assert dev.statuses()[-1] == ("failed", "chunk"), dev.statuses()
    assert not otaboot.pointer()


def test_wrong_content_fails_the_file_and_keeps_the_pointer():
    _clean()
    dev = Dev()
    upd = ota.Updater(dev)
    upd.manifest(manifest())
    serve(upd, dev, cut=lambda q, d: bytes(len(d)) if q["f"] == 1 else d)
    assert dev.statuses()[-1] == ("failed", "hash:hal/x.py"), dev.statuses()
    assert not otaboot.pointer()
    assert upd.m is None


def test_download_resumes_from_the_part_on_flash():
    _clean()
    dev = Dev()
    upd = ota.Updater(dev)
    upd.manifest(manifest())
    q = dev.requests()[0]
    upd.chunk(chunk(q, FILES[0][1][: q["n"]]))  # one chunk written, then the power went
    dev = Dev()
    upd = ota.Updater(dev)
    upd.manifest(manifest())
    q = next(m for k, m in dev.sent if k == "ota/get")
    assert (q["f"], q["o"]) == (0, ota.CHUNK), q
    serve(upd, dev)
    assert dev.statuses()[-1] == ("installed", None)


def test_same_release_again_resumes_and_late_chunks_are_ignored():
    _clean()
    dev = Dev()
    upd = ota.Updater(dev)
    upd.manifest(manifest())
    q = dev.requests()[0]
    upd.manifest(manifest())  # e.g. sent again after a reconnect
    assert dev.requests()[0] == q
    upd.chunk(chunk(dict(q, o=100), b"x" * 10))  # not what was asked: ignored
    upd.chunk(b"garbage")
    assert not dev.requests() and upd.off == 0
    serve_q = dict(q)
    upd.chunk(chunk(serve_q, FILES[0][1][: q["n"]]))
    assert upd.off == q["n"]


def test_a_trial_ignores_manifests_and_confirm_clears_it():
    _clean()
    trial = {"s": "a", "r": 2, "v": "2", "t": 2, "p": "", "pr": 0, "pv": ""}
    otaboot.save(dict(trial, hi=2, base=otaboot.mark()))
    dev = Dev(otaboot.pointer())
    upd = ota.Updater(dev)
    upd.manifest(manifest(r=3))
    assert not dev.sent
    upd.confirm()
    assert otaboot.pointer()["t"] == 0 and dev.ota["t"] == 0
    assert dev.statuses() == [("confirmed", None)] and dev.sent[-1][1]["r"] == 2
    _clean()
