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
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from faredge.config import MqttSettings
from faredge.errors import Dropped, Unavailable
from faredge.protocol.inbound import Inbound
from faredge.protocol.topics import DEVICE_WRITES, PREFIX, split_topic, topic
from faredge.registry import Device

log = logging.getLogger(__name__)
_TOPIC_CACHE = 10000


def make_client(
    settings: MqttSettings, *, manual_ack: bool = False, clean_session: bool = False
) -> paho.Client:
    """A configured (not yet connected) paho client; also used by tests and the benchmark."""
    client = paho.Client(
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
        self._client = make_client(settings, manual_ack=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message

    def start(self) -> None:
        try:
            self._client.connect_async(self.settings.host, self.settings.port, self.settings.keepalive_s)
        except (OSError, ValueError) as exc:
            raise Unavailable(f"MQTT broker {self.settings.host}:{self.settings.port}: {exc}") from exc
        self._client.loop_start()

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

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
        client.subscribe([(PREFIX + "+/" + kind, 1) for kind in DEVICE_WRITES])
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
        # paho hands bytes (typed bytes | bytearray); bytes() of a bytes object is that object
        msg = Inbound("mqtt", parts[0], parts[1], bytes(message.payload), done=done)
        if not self._offer(msg) and done:
            done()  # counted by the queue; cannot happen for QoS 1 with a sized queue (worker.py)

    # Downlink ---------------------------------------------------------------------
    def send_desired(self, device: Device, payload: bytes) -> None:
        """Retained and QoS 1: a device that (re)connects later gets it on subscription."""
        self._client.publish(topic(device.id, "twin/desired"), payload, qos=1, retain=True)
