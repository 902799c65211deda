"""MQTT adapter (paho-mqtt v2 API): the bridge's session with the broker. The only paho import.

- Persistent session: a fixed client id and clean_session=False (MQTT 3.1.1), so the broker
  queues QoS 1 messages while the bridge or the broker restarts (the broker persists them, see the
  generated mosquitto.conf) and delivers them when the bridge is back.
- on_message never blocks: it wraps the message and offers it to the bounded worker queue. QoS 1
  messages are acknowledged (manual ack) only after the router processed them: a crash loses
  nothing the broker has not been told about.
- Reconnects forever with exponential backoff (paho's reconnect_delay_set).
- Subscribes only to the message kinds devices write, so the bridge's own retained
  `twin/desired` publications never come back to it.
- Reads the broker connection in 64 KiB chunks (`ReadBuffer`, `BufferedClient`): see below.

Where the receive time went (bench/bridge.py, 20,000 telemetry messages of 64 bytes): a bare
paho subscriber spends ~25-30 us per message, the bridge's processing ~8 us (parse, identity,
live state; metrics cost nothing per message), yet the bridge took ~60 us per message. The rest
was the hand-off between paho's network thread and the worker. Stock paho makes four system
calls per packet (select, then recv(1) for the command byte, recv(1) per remaining-length
byte, recv(n) for the rest) and releases the GIL around each; whenever the worker waits for
the GIL, each of those releases is a chance to switch threads (and a futex wake-up for the
waiting thread), which measured as ~8-12 us of extra CPU per message on paho's thread alone.
`ReadBuffer` serves paho's small reads from one recv of up to 64 KiB, and `BufferedClient`
takes every complete packet already buffered in one `loop_read` (at most `BURST_PACKETS`, so
keepalive and outgoing acknowledgements still get their turn): the network thread then
releases the GIL about once per chunk instead of four times per message, and the worker runs
in longer stretches. Nothing is read ahead of what the kernel already received, so nothing is
buffered that the broker could not redeliver: QoS 1 is still acknowledged after processing.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from faredge.config import MqttSettings
from faredge.errors import Dropped, Unavailable
from faredge.protocol.inbound import Inbound
from faredge.protocol.topics import DEVICE_WRITES, PREFIX, split_topic, topic
from faredge.registry import Device

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

log = logging.getLogger(__name__)
_TOPIC_CACHE = 10000
READ_CHUNK = 65536  # bytes per recv() from the broker (~800 telemetry messages of 64 bytes)
BURST_PACKETS = 1000  # buffered packets taken per loop_read before paho writes and pings
_new = tuple.__new__  # Inbound without NamedTuple's Python-level __new__ (once per message)


class ReadBuffer:
    """A paho `SocketLike` over the broker socket that serves paho's small reads from a chunk.

    recv(n) returns at most n bytes, like a socket: from the chunk while it lasts, else from one
    recv(READ_CHUNK) of the socket, which raises (BlockingIOError, ssl.SSLWantReadError) and
    returns b"" at end of stream exactly as the socket does. `pending()` counts the buffered
    bytes (and TLS's own), so paho's loop does not wait in select() while data is buffered.
    Writes and the rest go straight to the socket.
    """

    __slots__ = ("_chunk", "_pos", "_sock")

    def __init__(self, sock: SocketLike) -> None:
        self._sock = sock
        self._chunk = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        chunk, pos = self._chunk, self._pos
        if pos >= len(chunk):
            chunk = self._sock.recv(READ_CHUNK)
            if len(chunk) <= size:  # all of it is asked for (or end of stream: b"")
                self._chunk, self._pos = b"", 0
                return chunk
            self._chunk, pos = chunk, 0
        end = min(pos + size, len(chunk))
        self._pos = end
        return chunk[pos:end]

    def buffered(self) -> int:
        """Bytes received from the socket and not yet handed to paho."""
        return len(self._chunk) - self._pos

    def pending(self) -> int:
        tls_pending = getattr(self._sock, "pending", None)
        return self.buffered() + (tls_pending() if tls_pending is not None else 0)

    def send(self, buffer: bytes | bytearray) -> int:
        return self._sock.send(buffer)

    def close(self) -> None:
        self._sock.close()

    def fileno(self) -> int:
        return self._sock.fileno()

    def setblocking(self, flag: bool) -> None:
        self._sock.setblocking(flag)


class BufferedClient(paho.Client):
    """paho's client reading through a `ReadBuffer`, taking every buffered packet per loop_read.

    It overrides `_create_socket`, paho's (private) socket factory, the hook paho itself uses to
    wrap the socket for TLS and websockets; test_faredge_mqtt checks that a connected bridge
    reads through the buffer, so a paho release that renames it fails a test instead of
    silently losing the speed-up.
    """

    _reader: ReadBuffer | None = None

    def _create_socket(self) -> SocketLike:
        self._reader = ReadBuffer(super()._create_socket())
        return self._reader

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        reader, burst = self._reader, BURST_PACKETS
        # each call consumes buffered bytes or refills from the socket (or returns EAGAIN)
        while rc == MQTTErrorCode.MQTT_ERR_SUCCESS and burst and reader is not None and reader.buffered():
            rc = super().loop_read(max_packets)
            burst -= 1
        return rc


def make_client(
    settings: MqttSettings,
    *,
    manual_ack: bool = False,
    clean_session: bool = False,
    client_class: type[paho.Client] = paho.Client,
) -> paho.Client:
    """A configured (not yet connected) paho client; also used by tests and the benchmark (whose
    baseline is the stock `paho.Client`; the bridge uses `BufferedClient`)."""
    client = client_class(
        CallbackAPIVersion.VERSION2,
        client_id=settings.client_id,
        clean_session=clean_session,
        protocol=paho.MQTTv311,
        manual_ack=manual_ack,
    )
    if settings.username:
        client.username_pw_set(settings.username, settings.password or None)
    if settings.tls is not None:
        client.tls_set(
            ca_certs=settings.tls.ca_file,
            certfile=settings.tls.cert_file or None,
            keyfile=settings.tls.key_file or None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
    client.reconnect_delay_set(max(1, int(settings.reconnect_min_s)), max(1, int(settings.reconnect_max_s)))
    client.max_queued_messages_set(0)  # desired states published while disconnected wait, in order
    return client


class MqttChannel:
    def __init__(
        self,
        settings: MqttSettings,
        offer: Callable[[Inbound], bool],
        on_drop: Callable[[str | None, Dropped], None],
    ) -> None:
        self.settings = settings
        self._offer = offer
        self._on_drop = on_drop
        self.connected = threading.Event()
        self.connects = 0
        self._topics: dict[str, tuple[str, str]] = {}
        self._routes: dict[str, Callable[[str, bytes], None]] = {}
        self._client = make_client(settings, manual_ack=True, client_class=BufferedClient)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def route(self, kind: str, handler: Callable[[str, bytes], None]) -> None:
        """Device messages of `kind` (e.g. `ota/get`) go to `handler(device, payload)` on the
        network thread instead of the worker (the router never sees them); call before `start`."""
        self._routes[kind] = handler

    def start(self) -> None:
        try:
            self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"MQTT broker {self.settings.host}:{self.settings.port}: {exc}") from exc
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    @property
    def reads_buffered(self) -> bool:
        """True while connected through a `ReadBuffer` (tests check that the speed-up is on)."""
        return isinstance(self._client.socket(), ReadBuffer)

    # paho callbacks (network thread) -------------------------------------------------
    def _on_connect(
        self,
        client: paho.Client,
        userdata: object,
        flags: paho.ConnectFlags,
        reason: object,
        properties: object,
    ) -> None:
        if getattr(reason, "is_failure", False):
            log.error("MQTT connect to %s:%s refused: %s", self.settings.host, self.settings.port, reason)
            return
        client.subscribe([(PREFIX + "+/" + kind, 1) for kind in (*DEVICE_WRITES, *self._routes)])
        self.connects += 1
        self.connected.set()
        log.info(
            "MQTT connected to %s:%s (session present: %s)",
            self.settings.host,
            self.settings.port,
            flags.session_present,
        )

    def _on_disconnect(
        self, client: paho.Client, userdata: object, flags: object, reason: object, properties: object
    ) -> None:
        self.connected.clear()
        log.warning("MQTT disconnected (%s); reconnecting with backoff", reason)

    def _on_message(self, client: paho.Client, userdata: object, message: paho.MQTTMessage) -> None:
        qos = message.qos
        if qos:
            mid = message.mid
            done: Callable[[], object] | None = lambda: client.ack(mid, qos)  # noqa: E731
        else:
            done = None
        name = message.topic
        parts = self._topics.get(name)
        if parts is None:
            parts = split_topic(name)
            if parts is not None and len(self._topics) < _TOPIC_CACHE:
                self._topics[name] = parts  # device topics repeat: split each one once
        if parts is None:
            self._on_drop(None, Dropped("topic", message.topic[:100]))
            if done:
                done()
            return
        if self._routes and parts[1] in self._routes:
            self._routed(parts[0], parts[1], bytes(message.payload), done)
            return
        # paho hands bytes (typed bytes | bytearray); bytes() of a bytes object is that object.
        # tuple.__new__ builds the same Inbound as Inbound(...) without its Python-level __new__.
        msg: Inbound = _new(Inbound, ("mqtt", parts[0], parts[1], bytes(message.payload), "", done))
        if not self._offer(msg) and done:
            done()  # counted by the queue; cannot happen for QoS 1 with a sized queue (worker.py)

    def _routed(self, device: str, kind: str, payload: bytes, done: Callable[[], object] | None) -> None:
        try:
            self._routes[kind](device, payload)
        except Dropped as drop:
            self._on_drop(device, drop)
        except Exception:
            log.exception("handler of %s from %s failed", kind, device)
        finally:
            if done:
                done()

    # Downlink ---------------------------------------------------------------------
    def publish(self, name: str, payload: bytes, qos: int, retain: bool = False) -> None:
        """Any downlink message (`route`d features answer through this)."""
        self._client.publish(name, payload, qos=qos, retain=retain)

    def send_desired(self, device: Device, payload: bytes) -> None:
        """Retained and QoS 1: a device that (re)connects later gets it on subscription."""
        self._client.publish(topic(device.id, "twin/desired"), payload, qos=1, retain=True)
