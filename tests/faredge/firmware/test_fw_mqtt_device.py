"""The same firmware on the MQTT transport, inside the real MicroPython (sockets through Node),
against a private Mosquitto; a paho client plays the bridge."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from faredge.virtual import MqttDevice
from faredge.virtual.host import NodeHost
from mlsysops.testing import wait_for

BASE = "mlsysops/v1/dev/md-1/"
Broker = Any  # conftest.Broker


class Bridge:
    """A paho v2 subscriber on the device's topics; messages land in a queue (never blocks)."""

    def __init__(
        self, port: int, *, ca: Path | None = None, user: str | None = None, password: str | None = None
    ) -> None:
        self.q: queue.Queue[tuple[str, dict[str, Any], bool]] = queue.Queue()
        self.c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"peer-{time.monotonic_ns()}")
        if ca is not None:
            self.c.tls_set(ca_certs=str(ca))
        if user is not None:
            self.c.username_pw_set(user, password)
        self.c.on_message = lambda _c, _u, m: self.q.put((m.topic, json.loads(m.payload), m.retain))
        subscribed = threading.Event()
        self.c.on_subscribe = lambda *_a: subscribed.set()
        self.c.connect("127.0.0.1", port)
        self.c.subscribe(BASE + "#", qos=1)
        self.c.loop_start()
        if not subscribed.wait(10):
            raise TimeoutError("no SUBACK from the broker")

    def next(self, suffix: str, timeout: float = 15.0) -> tuple[dict[str, Any], bool]:
        """The next message on the device's topic `suffix` (others are skipped) and its retain flag."""

        def matching() -> tuple[dict[str, Any], bool] | None:
            try:
                topic, msg, retain = self.q.get(timeout=0.05)
            except queue.Empty:
                return None
            return (msg, retain) if topic == BASE + suffix else None

        result: tuple[dict[str, Any], bool] = wait_for(
            matching, timeout=timeout, what=f"a message on {BASE}{suffix}", interval=0
        )
        return result

    def desired(self, version: int, settings: dict[str, Any]) -> None:
        body = json.dumps({"id": "md-1", "version": version, "settings": settings})
        self.c.publish(BASE + "twin/desired", body, qos=1, retain=True).wait_for_publish(5)

    def close(self) -> None:
        self.c.loop_stop()
        self.c.disconnect()


@pytest.fixture
def bridge(broker: Broker) -> Iterator[Bridge]:
    b = Bridge(broker.port)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def device(node_host: NodeHost, broker: Broker, tmp_path: Path, bridge: Bridge) -> Iterator[MqttDevice]:
    cfg = {
        "id": "md-1",
        "interval_ms": 200,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive": 10},
    }
    with MqttDevice(cfg, tmp_path / "dev", host=node_host) as d:
        yield d


def test_connect_announces_online_birth_then_twin_get(
    device: MqttDevice, bridge: Bridge, broker: Broker
) -> None:
    status, _ = bridge.next("status")
    assert status == {"id": "md-1", "online": True}
    birth, _ = bridge.next("birth")
    assert birth["id"] == "md-1" and birth["boot"] == 1 and birth["board"] == "virtual"
    assert bridge.next("twin/get")[0] == {"id": "md-1"}
    tel, _ = bridge.next("telemetry")
    assert tel["id"] == "md-1" and set(tel["r"]) == {"temp", "light", "vbat"}
    late = Bridge(broker.port)  # a bridge that starts later still learns the device is online
    try:
        assert late.next("status") == ({"id": "md-1", "online": True}, True)
    finally:
        late.close()


def test_desired_state_applied_and_reported(device: MqttDevice, bridge: Bridge) -> None:
    bridge.next("twin/get")
    bridge.desired(4, {"interval_ms": 150, "batch": 3, "freq_hz": 80_000_000})
    rep, _ = bridge.next("twin/reported")
    assert rep["version"] == 4 and rep["errors"] == {} and rep["settings"]["batch"] == 3
    while True:
        tel, _ = bridge.next("telemetry")
        if "batch" in tel:
            break
    assert len(tel["batch"]) == 3 and tel["batch"][0]["freq"] == 80_000_000


def test_retained_desired_is_picked_up_on_connect(
    node_host: NodeHost, broker: Broker, bridge: Bridge, tmp_path: Path
) -> None:
    bridge.desired(2, {"batch": 2})  # before the device exists: retained by the broker
    cfg = {"id": "md-1", "mqtt": {"host": "127.0.0.1", "port": broker.port}}
    with MqttDevice(cfg, tmp_path / "d", host=node_host):
        rep, _ = bridge.next("twin/reported")
        assert rep["version"] == 2 and rep["settings"]["batch"] == 2


def test_last_will_marks_device_offline(device: MqttDevice, bridge: Bridge) -> None:
    assert bridge.next("status")[0]["online"] is True
    device.stop()  # the interpreter dies without DISCONNECT: the broker publishes the will
    status, _ = bridge.next("status")
    assert status == {"id": "md-1", "online": False}


def test_reconnects_after_broker_restart_and_resubscribes(
    device: MqttDevice, bridge: Bridge, broker: Broker
) -> None:
    bridge.next("twin/get")
    bridge.close()
    broker.stop()
    broker.start()  # same port, fresh broker: no session, no retained messages
    peer = Bridge(broker.port)
    try:
        birth, _ = peer.next("birth", timeout=20)  # backoff 1 s (+ jitter) then a new birth
        assert birth["boot"] == 1
        peer.next("twin/get")
        peer.desired(7, {"batch": 2})
        assert peer.next("twin/reported")[0]["version"] == 7
    finally:
        peer.close()
    assert "mqtt: link down" in device.console


def test_firmware_pings_keep_an_idle_connection_alive(
    node_host: NodeHost, broker: Broker, bridge: Bridge, tmp_path: Path
) -> None:
    """No telemetry for a minute, keepalive 10 s: only the firmware's own PINGREQs (every 5 s)
    stop Mosquitto from dropping it at 15 s and publishing the will."""
    cfg = {
        "id": "md-1",
        "interval_ms": 60_000,
        "mqtt": {"host": "127.0.0.1", "port": broker.port, "keepalive": 10},
    }
    with MqttDevice(cfg, tmp_path / "idle", host=node_host) as dev:
        bridge.next("twin/get")
        wait_for(
            lambda: broker.log.count("Received PINGREQ from md-1") >= 3,
            timeout=30,
            what="3 PINGREQs from md-1",
            interval=0.2,
        )
        assert "link down" not in dev.console
        assert bridge.q.empty() or all(m[1].get("online", True) for m in list(bridge.q.queue))


def test_tls_with_password_under_the_protocol_acl(
    node_host: NodeHost, secure_broker: Broker, tmp_path: Path
) -> None:
    """Mosquitto with TLS only, passwords and the ACL of docs/faredge-protocol.md: the firmware
    verifies the broker against the CA on its flash and every topic it uses is allowed."""
    ca = secure_broker.ca
    peer = Bridge(secure_broker.port, ca=ca, user="bridge", password="bridge-pw")
    cfg = {
        "id": "md-1",
        "interval_ms": 200,
        "mqtt": {
            "host": "127.0.0.1",
            "port": secure_broker.port,
            "tls": True,
            "ca": "ca.crt",
            "user": "md-1",
            "password": "md-1-pw",
        },
    }
    try:
        with MqttDevice(cfg, tmp_path / "tls-dev", host=node_host, files={"ca.crt": ca.read_bytes()}):
            assert peer.next("status")[0]["online"] is True
            assert peer.next("birth")[0]["id"] == "md-1"
            peer.next("twin/get")
            peer.desired(3, {"batch": 2})  # the device may read only its own twin/desired
            assert peer.next("twin/reported")[0]["version"] == 3
            assert "batch" in peer.next("telemetry")[0]
    finally:
        peer.close()


def test_wrong_password_is_refused_and_retried(
    node_host: NodeHost, secure_broker: Broker, tmp_path: Path
) -> None:
    cfg = {
        "id": "md-1",
        "mqtt": {
            "host": "127.0.0.1",
            "port": secure_broker.port,
            "tls": True,
            "ca": "ca.crt",
            "password": "wrong",
        },
    }
    files = {"ca.crt": secure_broker.ca.read_bytes()}
    with MqttDevice(cfg, tmp_path / "bad-pw", host=node_host, files=files) as dev:
        assert dev.wait_console("refused rc=5", timeout=15, count=2)  # not authorised, backing off
