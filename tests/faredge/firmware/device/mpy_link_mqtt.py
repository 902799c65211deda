"""MQTT transport (firmware/micropython/link_mqtt.py) over fake connections, inside MicroPython:
the order of a (re)connect, the will, desired-state dispatch, QoS 1 carried across a reconnect."""

import asyncio
import json

import mqtt
from link_mqtt import MqttLink

BASE = "mlsysops/v1/dev/d1/"
CFG = {
    "id": "d1",
    "mqtt": {"host": "h", "port": 1883, "keepalive": 60, "user": "d1", "password": "pw", "qos_telemetry": 0},
}


class Conn:
    def __init__(self):
        self.out = bytearray()
        self.inbox = bytearray(b"\x20\x02\x00\x00")  # CONNACK accepted
        self.closed = False

    def write(self, data):
        self.out.extend(data)

    def read(self):
        if self.closed:
            raise OSError(104)
        d, self.inbox = bytes(self.inbox), bytearray()
        return d

    def close(self):
        self.closed = True

    def packets(self):
        return mqtt.Reader(limit=100000).feed(bytes(self.out))


class Hal:
    def __init__(self):
        self.conns = []

    async def net_up(self, cfg):
        return None

    async def tcp_open(self, host, port, tls, ca):
        self.conns.append(Conn())
        return self.conns[-1]


class Dev:
    def __init__(self):
        self.link = None
        self.msgs = []
        self.ota = []

    def on_connect(self):
        self.link.send("birth", b'{"id": "d1"}')
        self.link.send("twin/get", b'{"id": "d1"}')

    def on_ota(self, kind, payload):
        self.ota.append((kind, payload))

    def on_message(self, kind, msg):
        self.msgs.append(msg)


def _publishes(conn):
    return [mqtt.parse_publish(f, b) for t, f, b in conn.packets() if t == mqtt.PUBLISH]


async def _wait(pred, ms=2000):
    for _ in range(ms // 10):
        if pred():
            return
        await asyncio.sleep_ms(10)
    raise AssertionError("condition not reached")


class Running:
    """A link's run() task over fake connections, cancelled on exit (`async with`)."""

    def __init__(self, cfg=CFG, before=None):
        self.cfg, self.before = cfg, before

    async def __aenter__(self):
        self.hal, self.dev = Hal(), Dev()
        self.link = self.dev.link = MqttLink(self.cfg, self.hal, self.dev)
        if self.before:
            self.before(self.link)
        self.task = asyncio.create_task(self.link.run())
        await _wait(lambda: self.hal.conns and self.link.s is not None)
        return self

    async def __aexit__(self, *exc):
        self.task.cancel()


async def test_connect_subscribe_status_birth_get_in_this_order():
    async with Running() as r:
        conn = r.hal.conns[0]
        await _wait(lambda: len(_publishes(conn)) >= 3)
        types = [t for t, _, _ in conn.packets()]
        assert types[:7] == [1, 8, 8, 8, 3, 3, 3], types  # CONNECT, SUBSCRIBE x3, PUBLISH x3
        subs = [b for t, _, b in conn.packets() if t == 8]
        for i, kind in enumerate(("twin/desired", "ota/manifest", "ota/chunk")):
            assert (BASE + kind).encode() in subs[i], subs
        connect = conn.packets()[0][2]
        assert b"d1" in connect and b"pw" in connect and b'"online": false' in connect
        status, birth, get = _publishes(conn)[:3]
        assert status[0] == BASE + "status" and status[4] and json.loads(status[1])["online"]
        assert (birth[0], birth[2]) == (BASE + "birth", 1) and get[0] == BASE + "twin/get"


async def test_desired_dispatched_other_topics_and_bad_json_counted():
    async with Running() as r:
        c = r.hal.conns[0]
        c.inbox += mqtt.publish(BASE + "twin/desired", b'{"version": 1}', 1, False, 5)
        c.inbox += mqtt.publish(BASE + "twin/desired", b"{nope", 0)
        c.inbox += mqtt.publish("other/topic", b"{}", 0)
        await _wait(lambda: r.link.bad == 2)
        assert r.dev.msgs == [{"version": 1}]
        assert b"\x40\x02\x00\x05" in c.out  # PUBACK for the QoS 1 desired state


async def test_ota_topics_go_to_the_device_as_bytes():
    async with Running() as r:
        c = r.hal.conns[0]
        c.inbox += mqtt.publish(BASE + "ota/chunk", b"1 0 0\n\x00\xff", 0)
        c.inbox += mqtt.publish(BASE + "ota/manifest", b"sig{}", 1, False, 6)
        await _wait(lambda: len(r.dev.ota) == 2)
        assert r.dev.ota == [("chunk", b"1 0 0\n\x00\xff"), ("manifest", b"sig{}")]
        assert r.link.bad == 0


async def test_unacked_qos1_resent_with_dup_after_reconnect():
    async with Running() as r:
        assert r.link.send("twin/reported", b'{"version": 3}')
        r.hal.conns[0].closed = True  # the link dies before any PUBACK
        await _wait(lambda: len(r.hal.conns) == 2 and r.link.s is not None, ms=4000)
        conn = r.hal.conns[1]
        await _wait(lambda: any(p[0] == BASE + "twin/reported" for p in _publishes(conn)))
        again = [p for p in _publishes(conn) if p[0] == BASE + "twin/reported"]
        assert again[0][5] is True and again[0][1] == b'{"version": 3}'  # DUP set


QOS1 = {"id": "d1", "mqtt": dict(CFG["mqtt"], qos_telemetry=1)}


def _fill(link, n):
    for i in range(n):
        assert link.send("telemetry", b'{"seq": %d}' % i) is False  # the link is down: kept


async def test_qos1_telemetry_kept_while_down_and_sent_in_order_after_the_birth():
    async with Running(QOS1, lambda link: _fill(link, 5)) as r:
        conn = r.hal.conns[0]
        await _wait(lambda: len(_publishes(conn)) >= 8)
        topics = [p[0][len(BASE) :] for p in _publishes(conn)]
        assert topics[:3] == ["status", "birth", "twin/get"] and topics[3:8] == ["telemetry"] * 5
        tel = [p for p in _publishes(conn) if p[0] == BASE + "telemetry"]
        assert [json.loads(p[1])["seq"] for p in tel] == [0, 1, 2, 3, 4] and all(p[2] == 1 for p in tel)
        assert r.link.ring == [] and r.link.dropped == 0
        assert r.link.send("telemetry", b'{"seq": 5}')  # connected, ring empty: straight out


def test_a_full_ring_drops_the_oldest_and_counts_it():
    link = MqttLink(QOS1, Hal(), Dev())
    _fill(link, 70)
    assert len(link.ring) == 64 and link.dropped == 6 and link.ring[0] == b'{"seq": 6}'
    big = MqttLink(QOS1, Hal(), Dev())
    for _ in range(10):
        big.send("telemetry", b"x" * 1000)
    assert big.ring_bytes <= 8192 and big.dropped == 2  # the byte bound holds too


def test_qos0_telemetry_is_not_kept():
    link = MqttLink(CFG, Hal(), Dev())
    assert link.send("telemetry", b"{}") is False and link.ring == [] and link.dropped == 0


async def test_a_publish_on_a_dead_connection_is_kept_not_raised():
    async with Running(QOS1) as r:
        await _wait(lambda: len(_publishes(r.hal.conns[0])) >= 3)

        def dead(data):
            raise OSError(104)

        r.hal.conns[0].write = dead
        assert r.link.send("telemetry", b'{"seq": 0}') is False  # no exception into the sampler
        assert r.link.ring == [b'{"seq": 0}']
