"""Helpers for tests, the demo and the benchmark: a protocol-speaking MQTT device client (paho,
per-device credentials), a login probe and metric sampling. Not used by the daemon; polling with a
deadline is the shared `mlsysops.testing.wait_for`.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from faredge.channels.mqtt import make_client
from faredge.config import MqttSettings, TlsSettings
from faredge.metrics import BridgeMetrics
from faredge.protocol.topics import topic
from mlsysops.testing import wait_for


def sample(metrics: BridgeMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def can_login(port: int, user: str, password: str) -> bool:
    """True once the broker accepts these credentials (after a provision and reload)."""
    client = make_client(
        MqttSettings(port=port, client_id=f"probe-{uuid.uuid4().hex[:8]}", username=user, password=password),
        clean_session=True,
    )
    result: list[bool] = []

    def on_connect(client: object, userdata: object, flags: object, reason: object, props: object) -> None:
        result.append(not getattr(reason, "is_failure", True))

    def answered() -> bool:
        client.loop(0.05)  # the network loop runs in this thread: poll it while waiting
        return bool(result)

    client.on_connect = on_connect
    try:
        client.connect("127.0.0.1", port, 10)
    except OSError:
        return False
    with contextlib.suppress(AssertionError):  # no CONNACK within 2 s: not (yet) accepted
        wait_for(answered, timeout=2, what=f"CONNACK for {user}", interval=0)
    client.disconnect()
    return bool(result and result[0])


class DeviceClient:
    """A device speaking the protocol with paho, authenticated with its own credentials."""

    def __init__(
        self,
        port: int,
        device_id: str,
        password: str,
        *,
        user: str | None = None,
        tls: TlsSettings | None = None,
    ) -> None:
        self.id = device_id
        self.desired: list[dict[str, Any]] = []
        self.connected = threading.Event()
        self.client = make_client(
            MqttSettings(
                port=port,
                client_id=f"dev-{device_id}-{uuid.uuid4().hex[:4]}",
                username=user or device_id,
                password=password,
                tls=tls,
            ),
            clean_session=True,
        )
        self.client.will_set(
            topic(device_id, "status"), json.dumps({"id": device_id, "online": False}), qos=1, retain=True
        )
        self.client.on_connect = self._on_connect
        self.client.on_message = lambda c, u, m: self.desired.append(json.loads(m.payload))
        self._port = port

    def start(self) -> DeviceClient:
        """Connect, subscribe to the desired state and wait until connected; returns self."""
        self.client.connect("127.0.0.1", self._port, 10)
        self.client.loop_start()
        wait_for(self.connected.is_set, what=f"{self.id} connected")
        return self

    def _on_connect(
        self, client: object, userdata: object, flags: object, reason: object, props: object
    ) -> None:
        self.client.subscribe(topic(self.id, "twin/desired"), qos=1)
        self.connected.set()

    def publish(
        self, kind: str, body: dict[str, Any] | bytes, *, device_topic: str | None = None, qos: int = 1
    ) -> None:
        payload = body if isinstance(body, bytes) else json.dumps({"id": self.id, **body}).encode()
        info = self.client.publish(topic(device_topic or self.id, kind), payload, qos=qos)
        if qos:
            info.wait_for_publish(5)

    def birth(self, **extra: Any) -> None:
        self.publish(
            "birth", {"fw": "1.0", "board": "virtual", "boot": 1, "sensors": ["temp"], "freq": 1, **extra}
        )

    def crash(self) -> None:
        """Drop the TCP connection without DISCONNECT: the broker publishes the will."""
        self.client.loop_stop()
        sock = self.client.socket()
        if sock is not None:
            sock.close()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def firmware_qos1_through_restarts(
    bridge: Any,  # faredge.bootstrap.Bridge (only the entry points import the composition root)
    port: int,
    device_id: str,
    password: str,
    restart: Callable[[], None],
    workdir: Path,
    *,
    host: Any = None,
    restarts: int = 10,
) -> tuple[int, int, int]:
    """Our firmware (the virtual MQTT device, real MicroPython) streams QoS 1 telemetry at 10
    messages/s while `restart()` restarts the broker `restarts` times; returns (lost, counted
    by the device in its births, sent). Used by the tests and bench/bridge.py."""
    from faredge.virtual import MqttDevice  # the MicroPython host only when this runs

    mqtt = {"host": "127.0.0.1", "port": port, "user": device_id, "password": password, "qos_telemetry": 1}
    config = {"id": device_id, "interval_ms": 100, "mqtt": mqtt}
    seen: set[int] = set()
    sub = bridge.router.events.subscribe()

    def drain() -> bool:
        while (event := sub.get(timeout=0.01)) is not None:
            if event.get("event") == "telemetry" and event.get("id") == device_id:
                seen.add(event["seq"])
        return False

    def counted() -> int:
        device = bridge.registry.find(device_id)
        return device.telemetry_lost if device else 0

    try:
        with MqttDevice(config, workdir, host=host) as device:
            wait_for(lambda: drain() or len(seen) >= 3, what="telemetry streaming", timeout=30)
            for _ in range(restarts):
                wait_for(lambda: drain() or bridge.registry.get(device_id).online, what="online", timeout=30)
                restart()
                try:
                    wait_for(_more_than(seen, len(seen) + 5, drain), what="streaming again", timeout=30)
                except AssertionError:
                    console = device.console[-3000:]
                    raise AssertionError(f"not streaming again; device console:\n{console}") from None
            with contextlib.suppress(AssertionError):  # what never arrived is returned
                wait_for(
                    lambda: drain() or max(seen) + 1 - len(seen) <= counted(),
                    what="every message delivered or counted",
                    timeout=30,
                )
    finally:
        sub.close()
    sent = max(seen) + 1
    return sent - len(seen), counted(), sent


def _more_than(seen: set[int], n: int, drain: Callable[[], bool]) -> Callable[[], bool]:
    return lambda: drain() or len(seen) > n


def run_mpremote(port: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Stock mpremote (PyPI) against a board's port, in a process of its own, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "mpremote", "connect", port, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
