"""A small MQTT 3.1.1 client: packet codec plus a session state machine, no I/O of its own.

`Session` runs over any connection object with `write(bytes)` and `read() -> bytes` (empty when
nothing arrived, OSError when closed), and is driven by `poll(now)` with `time.ticks_ms()`
values, so tests drive it with a fake connection and a fake clock. The firmware itself sends
PINGREQ at keepalive/2 and declares the link dead when nothing came back for 1.5 x keepalive
(the broker's own limit), so a half-open TCP connection is found without waiting for the OS.
QoS 1 publications stay in `inflight` until their PUBACK and are resent with DUP set.
"""

from time import ticks_add, ticks_diff

CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBACK = 9
PINGRESP = 13
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


class MqttError(Exception):
    """Protocol violation, refused connection, or a dead link: the caller reconnects."""


def _str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return len(b).to_bytes(2, "big") + b


def packet(first, body):
    """Fixed header (type/flags byte, remaining length varint) + body."""
    n = len(body)
    out = bytearray((first,))
    while True:
        d = n & 0x7F
        n >>= 7
        out.append(d | 0x80 if n else d)
        if not n:
            break
    out.extend(body)
    return out


def connect(client_id, keepalive, user=None, password=None, will=None, clean=True):
    """CONNECT; will = (topic, message, qos, retain) or None."""
    flags = 2 if clean else 0
    tail = b""
    if will:
        flags |= 4 | (will[2] << 3) | (32 if will[3] else 0)
        tail += _str(will[0]) + _str(will[1])
    if user is not None:
        flags |= 128
        tail += _str(user)
        if password is not None:
            flags |= 64
            tail += _str(password)
    body = _str("MQTT") + bytes((4, flags)) + keepalive.to_bytes(2, "big") + _str(client_id) + tail
    return packet(0x10, body)


def publish(topic, payload, qos=0, retain=False, pid=0, dup=False):
    first = 0x30 | (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = _str(topic) + (pid.to_bytes(2, "big") if qos else b"") + payload
    return packet(first, body)


def subscribe(pid, topic, qos):
    return packet(0x82, pid.to_bytes(2, "big") + _str(topic) + bytes((qos,)))


def puback(pid):
    return packet(0x40, pid.to_bytes(2, "big"))


def parse_publish(flags, body):
    """(topic, payload, qos, pid, retain, dup) of a PUBLISH body."""
    if len(body) < 2:
        raise MqttError("short PUBLISH")
    n = (body[0] << 8) | body[1]
    qos = (flags >> 1) & 3
    i = 2 + n
    if qos > 1 or len(body) < i + (2 if qos else 0):
        raise MqttError("bad PUBLISH")
    try:
        topic = bytes(body[2:i]).decode()
    except UnicodeError:
        raise MqttError("topic not UTF-8") from None
    pid = 0
    if qos:
        pid = (body[i] << 8) | body[i + 1]
        i += 2
    return topic, bytes(body[i:]), qos, pid, bool(flags & 1), bool(flags & 8)


class Reader:
    """Splits a byte stream into (type, flags, body); packets over `limit` bytes are an error."""

    def __init__(self, limit=4096):
        self.buf = bytearray()
        self.limit = limit

    def feed(self, data):
        self.buf.extend(data)
        out = []
        buf = self.buf
        start = 0
        while len(buf) - start >= 2:
            n = 0
            shift = 0
            i = start + 1
            while True:
                if i >= len(buf):
                    n = -1
                    break
                d = buf[i]
                n |= (d & 0x7F) << shift
                i += 1
                if not d & 0x80:
                    break
                shift += 7
                if shift > 21:
                    raise MqttError("bad remaining length")
            if n < 0:
                break
            if n > self.limit:
                raise MqttError("packet too large")
            if len(buf) < i + n:
                break
            out.append((buf[start] >> 4, buf[start] & 15, bytes(buf[i : i + n])))
            start = i + n
        if start:
            self.buf = buf[start:]
        return out


class Session:
    """One MQTT connection: CONNACK, PUBACK bookkeeping, retransmission, keepalive."""

    def __init__(self, conn, now, keepalive=60, retry_ms=2000):
        self.conn = conn
        self.rd = Reader()
        self.keepalive = keepalive
        self.retry_ms = retry_ms
        self.pid = 0
        self.inflight = {}  # pid -> [packet, resend deadline]
        self.up = False
        self.last_tx = self.last_rx = self.last_ping = now

    def send(self, data, now):
        self.conn.write(data)
        self.last_tx = now

    def _next_pid(self):
        self.pid = self.pid % 65535 + 1
        return self.pid

    def publish(self, topic, payload, now, qos=0, retain=False):
        pid = self._next_pid() if qos else 0
        self.send(publish(topic, payload, qos, retain, pid), now)
        if qos:
            self.inflight[pid] = [
                publish(topic, payload, qos, retain, pid, True),
                ticks_add(now, self.retry_ms),
            ]
        return pid

    def subscribe(self, topic, qos, now):
        pid = self._next_pid()
        self.send(subscribe(pid, topic, qos), now)
        return pid

    def poll(self, now):
        """Process what arrived; return [(topic, payload)] received; raise MqttError if dead."""
        msgs = []
        data = self.conn.read()
        if data:
            self.last_rx = now
            for t, flags, body in self.rd.feed(data):
                if t == CONNACK:
                    if len(body) != 2 or body[1]:
                        raise MqttError("refused rc=" + str(body[1] if len(body) == 2 else -1))
                    self.up = True
                elif t == PUBLISH:
                    topic, payload, qos, pid, _, _ = parse_publish(flags, body)
                    if qos:
                        self.send(puback(pid), now)
                    msgs.append((topic, payload))
                elif t == PUBACK and len(body) == 2:
                    self.inflight.pop((body[0] << 8) | body[1], None)
        ka = self.keepalive * 1000
        if ka and ticks_diff(now, self.last_rx) > ka * 3 // 2:
            raise MqttError("keepalive timeout")
        half = ka // 2
        if (
            ka
            and ticks_diff(now, self.last_ping) >= half
            and (ticks_diff(now, self.last_tx) >= half or ticks_diff(now, self.last_rx) >= half)
        ):
            self.send(PINGREQ, now)
            self.last_ping = now
        if self.up:
            for p in self.inflight.values():
                if ticks_diff(now, p[1]) >= 0:
                    self.send(p[0], now)
                    p[1] = ticks_add(now, self.retry_ms)
        return msgs
