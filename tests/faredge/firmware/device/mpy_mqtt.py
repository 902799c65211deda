"""MQTT 3.1.1 packet codec and session (firmware/micropython/mqtt.py) inside MicroPython."""

import mqtt


def _error(fn, *args):
    """The MqttError `fn(*args)` raises (AssertionError if it raises none)."""
    try:
        fn(*args)
    except mqtt.MqttError as e:
        return e
    raise AssertionError("no MqttError from " + repr(args))


def _connected(keepalive=60, **kw):
    c = FakeConn()
    s = mqtt.Session(c, 0, keepalive, **kw)
    c.inbox += b"\x20\x02\x00\x00"
    s.poll(0)
    return c, s


class FakeConn:
    def __init__(self):
        self.out = []
        self.inbox = bytearray()

    def write(self, data):
        self.out.append(bytes(data))

    def read(self):
        d, self.inbox = bytes(self.inbox), bytearray()
        return d


def test_connect_packet_bytes_with_will_user_password():
    p = mqtt.connect("d1", 60, "d1", "pw", ("t/s", b"off", 1, True))
    assert bytes(p) == (
        b"\x10\x20\x00\x04MQTT\x04\xee\x00\x3c\x00\x02d1\x00\x03t/s\x00\x03off\x00\x02d1\x00\x02pw"
    )


def test_remaining_length_varint_boundaries():
    for n, enc in (
        (0, b"\x00"),
        (127, b"\x7f"),
        (128, b"\x80\x01"),
        (16383, b"\xff\x7f"),
        (16384, b"\x80\x80\x01"),
    ):
        assert bytes(mqtt.packet(0x30, b"x" * n)[1 : 1 + len(enc)]) == enc


def test_publish_qos1_round_trip_through_reader():
    p = mqtt.publish("a/b", b"\x00payload", 1, True, 0x1234, True)
    r = mqtt.Reader()
    assert r.feed(p[:3]) == []
    ((t, flags, body),) = r.feed(p[3:])
    assert t == mqtt.PUBLISH
    assert mqtt.parse_publish(flags, body) == ("a/b", b"\x00payload", 1, 0x1234, True, True)


def test_subscribe_and_puback_bytes():
    assert bytes(mqtt.subscribe(7, "x/y", 1)) == b"\x82\x08\x00\x07\x00\x03x/y\x01"
    assert bytes(mqtt.puback(258)) == b"\x40\x02\x01\x02"


def test_reader_rejects_oversized_and_malformed():
    for bad in (b"\x30\x0b", b"\x30\xff\xff\xff\xff\x01"):
        _error(mqtt.Reader(limit=10).feed, bad)
    assert mqtt.Reader(limit=10).feed(b"\xd0\x00") == [(13, 0, b"")]
    _error(mqtt.parse_publish, 2, b"\x00\x05ab")


def test_session_connack_refused_raises():
    c = FakeConn()
    s = mqtt.Session(c, 0, 60)
    c.inbox += b"\x20\x02\x00\x05"
    assert "rc=5" in str(_error(s.poll, 10))


def test_session_qos1_retransmits_with_dup_until_puback():
    c, s = _connected(retry_ms=1000)
    pid = s.publish("t", b"m", 0, qos=1)
    assert c.out[-1][0] == 0x32
    s.poll(999)
    assert len(c.out) == 1
    s.poll(1000)
    assert c.out[-1][0] == 0x3A  # DUP | QoS 1
    c.inbox += mqtt.puback(pid)
    s.poll(1500)
    n = len(c.out)
    s.poll(5000)
    assert len(c.out) == n and not s.inflight


def test_session_acks_incoming_qos1_and_returns_message():
    c = FakeConn()
    s = mqtt.Session(c, 0, 60)
    c.inbox += b"\x20\x02\x00\x00" + mqtt.publish("d/twin", b"{}", 1, False, 9)
    assert s.poll(1) == [("d/twin", b"{}")]
    assert c.out[-1] == b"\x40\x02\x00\x09"


def test_session_pings_at_half_keepalive_and_dies_without_answer():
    c, s = _connected(10)
    s.poll(4999)
    assert mqtt.PINGREQ not in c.out
    s.poll(5000)
    assert c.out[-1] == mqtt.PINGREQ
    c.inbox += b"\xd0\x00"
    s.poll(6000)
    s.poll(20999)  # 15 s after the last PINGRESP: still alive
    _error(s.poll, 21001)


def test_session_pings_even_while_publishing_if_broker_is_silent():
    c, s = _connected(10)
    for t in range(0, 6001, 1000):
        s.publish("t", b"x", t)
        s.poll(t)
    assert mqtt.PINGREQ in c.out


def _lcg(seed):
    while True:
        seed = (seed * 1103515245 + 12345) & 0x7FFFFFFF
        yield seed >> 16


def _parsed_or_rejected(flags, body):
    try:
        return mqtt.parse_publish(flags, body)
    except mqtt.MqttError as e:
        return e


def test_fuzz_reader_and_publish_parser_only_raise_mqtt_errors():
    """Deterministic pseudo-random input (no hypothesis on the device): any byte stream either
    parses or raises MqttError, never anything else, and the buffer never exceeds the limit."""
    rnd = _lcg(7)
    assert isinstance(_parsed_or_rejected(0, b"\x00\x02\xff\xfe"), mqtt.MqttError)  # not UTF-8
    for _ in range(300):
        n = next(rnd) % 64
        data = bytes(next(rnd) & 0xFF for _ in range(n))
        r = mqtt.Reader(limit=256)
        try:
            for t, flags, body in r.feed(data):
                if t == mqtt.PUBLISH:
                    _parsed_or_rejected(flags, body)
        except mqtt.MqttError:
            pass
        assert len(r.buf) <= 256 + 5
