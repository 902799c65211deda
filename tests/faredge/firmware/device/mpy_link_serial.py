"""Reliable serial link (firmware/micropython/link_serial.py) inside MicroPython."""

import json

import frames
from link_serial import SerialLink


class Uart:
    def __init__(self):
        self.out = bytearray()

    def read(self):
        return None

    def write(self, data):
        self.out.extend(data)

    def frames(self):
        d = frames.Decoder()
        got = d.feed(self.out)
        self.out = bytearray()
        return got


class Dev:
    def __init__(self):
        self.msgs = []
        self.connects = 0

    def on_message(self, kind, msg):
        self.msgs.append((kind, msg))

    def on_connect(self):
        self.connects += 1


def _link():
    u = Uart()
    return u, Dev(), None


def test_reliable_frame_retransmitted_with_doubling_then_given_up():
    u, dev, _ = _link()
    link = SerialLink(u, dev, ping_ms=10**6)
    link.send("birth", b"{}", 0)
    times = []
    for t in range(0, 10000, 10):
        link.tick(t)
        for f in u.frames():
            times.append(t)
            assert f[0] == frames.BIRTH and f[1] == 0
    assert times == [0, 200, 600, 1400, 3000]
    assert link.lost == 1 and not link.pending
    assert dev.connects == 1  # re-announced (BIRTH, TWIN_GET) after giving up


def test_ack_stops_retransmission():
    u, dev, _ = _link()
    link = SerialLink(u, dev, ping_ms=10**6)
    seq = link.send("twin/reported", b"{}", 0)
    link.receive(frames.encode(frames.ACK, seq), 50)
    u.frames()
    for t in range(0, 5000, 50):
        link.tick(t)
    assert u.frames() == [] and link.lost == 0


def test_telemetry_is_not_reliable():
    u, dev, _ = _link()
    link = SerialLink(u, dev, ping_ms=10**6)
    link.send("telemetry", b"{}", 0)
    assert not link.pending


def test_desired_acked_every_time_and_handled_once():
    u, dev, _ = _link()
    link = SerialLink(u, dev, ping_ms=10**6)
    f = frames.encode(frames.TWIN_DESIRED, 40, json.dumps({"id": "d", "version": 1}).encode())
    link.receive(f, 0)
    link.receive(f, 10)
    acks = u.frames()
    assert acks == [(frames.ACK, 40, b""), (frames.ACK, 40, b"")]
    assert dev.msgs == [("twin/desired", {"id": "d", "version": 1})]


def test_bad_json_acked_counted_and_dropped():
    u, dev, _ = _link()
    link = SerialLink(u, dev, ping_ms=10**6)
    link.receive(frames.encode(frames.TWIN_DESIRED, 1, b"{nope"), 0)
    assert link.bad == 1 and dev.msgs == []


def test_ping_after_silence_and_sequence_wraps():
    u, dev, _ = _link()
    link = SerialLink(u, dev, ping_ms=1000)
    link.seq = 65535
    link.send("telemetry", b"{}", 0)
    link.tick(999)
    link.tick(1000)
    got = u.frames()
    assert [(f[0], f[1]) for f in got] == [(frames.TELEMETRY, 65535), (frames.PING, 0)]


def test_sync_of_a_new_bridge_session_resets_dedup_and_re_announces():
    u, dev, _ = _link()
    link = SerialLink(u, dev, ping_ms=10**6)
    desired = json.dumps({"id": "d", "version": 1, "settings": {}}).encode()
    link.receive(frames.encode(frames.SYNC, 0, b'{"epoch": 7}'), 0)
    link.receive(frames.encode(frames.TWIN_DESIRED, 1, desired), 0)
    assert dev.connects == 1 and len(dev.msgs) == 1
    link.receive(frames.encode(frames.SYNC, 0, b'{"epoch": 7}'), 5)  # retransmitted: no effect
    assert dev.connects == 1
    link.receive(frames.encode(frames.SYNC, 0, b'{"epoch": 8}'), 10)  # the bridge restarted
    link.receive(frames.encode(frames.TWIN_DESIRED, 1, desired), 10)  # same (type, seq) again
    assert dev.connects == 2 and len(dev.msgs) == 2  # heard, not taken for a duplicate
    acks = [f for f in u.frames() if f[0] == frames.ACK]
    assert len(acks) == 5
    link.receive(frames.encode(frames.SYNC, 0, b"[1]"), 20)  # malformed: counted, ignored
    assert link.bad == 1 and dev.connects == 2
