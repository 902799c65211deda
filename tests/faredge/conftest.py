"""Fixtures of the bridge's tests: a private Mosquitto per session, device clients, bridges.

The broker runs /usr/sbin/mosquitto on a free loopback port with its own config dir, password
file and ACLs (rendered by faredge.broker exactly as `mlsysops devices provision` does).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from faredge.bootstrap import Bridge, build
from faredge.bridge.downlink import Downlink
from faredge.bridge.router import Router
from faredge.broker import BRIDGE_USER, BrokerLayout
from faredge.channels.mosquitto import (
    MosquittoProcess,
    free_port,
    mosquitto_binary,
    private_settings,
    reload_broker,
)
from faredge.config import Config, MqttSettings
from faredge.metrics import BridgeMetrics
from faredge.provision import add_bridge_user, init_broker, provision_device
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Device, Registry
from faredge.testing import DeviceClient, can_login

# ------------------------------------------------------------------ pure router fixtures
from mlsysops.testing import wait_for


@dataclass
class FakeDownlink:
    sent: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def send_desired(self, device: Device, payload: bytes) -> None:
        self.sent.append((device.id, json.loads(payload)))


@dataclass
class FakeInventory:
    changes: int = 0

    def changed(self) -> None:
        self.changes += 1


@dataclass
class RouterKit:
    router: Router
    metrics: BridgeMetrics
    downlink: FakeDownlink
    inventory: FakeInventory


@pytest.fixture
def kit(tmp_path: Path) -> RouterKit:
    metrics = BridgeMetrics(CollectorRegistry(), max_devices=10)
    downlink, inventory = FakeDownlink(), FakeInventory()
    downlinks: dict[str, Downlink] = {"mqtt": downlink, "serial": downlink}
    router = Router(
        Registry(tmp_path / "registry.json"),
        metrics,
        RateLimitedLog(logging.getLogger("tests.faredge"), 60),
        downlinks=downlinks,
        inventory=inventory,
    )
    metrics.watch_devices(router.snapshot)  # as faredge.bootstrap.build does
    return RouterKit(router, metrics, downlink, inventory)


# ------------------------------------------------------------------ the private broker
@dataclass
class Broker:
    layout: BrokerLayout
    port: int
    process: MosquittoProcess
    bridge_password: str
    passwords: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def device(self, device_id: str | None = None) -> tuple[str, str]:
        """Provision a fresh device (unique id), reload the broker, wait until its login works."""
        device_id = device_id or f"t{uuid.uuid4().hex[:10]}"
        with self.lock:
            result = provision_device(
                self.layout, device_id, board="virtual", host="127.0.0.1", port=self.port
            )
        self.passwords[device_id] = result.password
        wait_for(lambda: can_login(self.port, device_id, result.password), what=f"login of {device_id}")
        return device_id, result.password

    def bridge_user(self, user: str) -> str:
        """A bridge user of its own (the broker names sessions by username); its password.

        The login probe runs only for a new user: it would connect under the session's name
        (clean) and wipe a persistent session the user already has."""
        if user == BRIDGE_USER:
            return self.bridge_password
        with self.lock:
            new = user not in self.passwords
            if new:
                self.passwords[user] = add_bridge_user(self.layout, user)
                reload_broker(self.layout)
        password = self.passwords[user]
        if new:
            wait_for(lambda: can_login(self.port, user, password), what=f"login of {user}")
        return password

    def bridge_settings(self, client_id: str | None = None, **kw: Any) -> MqttSettings:
        """Settings of a test bridge: its own user named like its (persistent) session."""
        user = client_id or f"bridge-{uuid.uuid4().hex[:8]}"
        return MqttSettings(
            port=self.port,
            client_id=user,
            username=user,
            password=self.bridge_user(user),
            reconnect_max_s=1,
            **kw,
        )


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    if mosquitto_binary() is None or shutil.which("mosquitto_passwd") is None:
        pytest.skip("needs the Debian mosquitto package (mosquitto, mosquitto_passwd)")
    layout = BrokerLayout(tmp_path_factory.mktemp("faredge-broker"))
    port = free_port()
    password = init_broker(layout, private_settings(port))
    process = MosquittoProcess(layout, port)
    process.start()
    try:
        yield Broker(layout, port, process, password)
    finally:
        process.stop()


@pytest.fixture
def device(broker: Broker) -> Iterator[Callable[..., DeviceClient]]:
    """Provisioned devices connected with paho under their own credentials; closed at teardown."""
    clients: list[DeviceClient] = []

    def make(device_id: str | None = None) -> DeviceClient:
        dev_id, password = broker.device(device_id)
        client = DeviceClient(broker.port, dev_id, password).start()
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def make_bridge(tmp_path: Path) -> Iterator[Callable[..., Bridge]]:
    bridges: list[Bridge] = []

    def make(config: Config, **kw: Any) -> Bridge:
        bridge = build(config, **kw)
        bridge.start()
        bridges.append(bridge)
        return bridge

    try:
        yield make
    finally:
        for b in reversed(bridges):
            b.stop()


@pytest.fixture
def new_config(tmp_path: Path) -> Callable[..., Config]:
    """Config for a test bridge: private state dir and control socket, no metrics port, no agent."""

    def make(**kw: Any) -> Config:
        sock = Path("/tmp") / f"fe-{uuid.uuid4().hex[:10]}.sock"  # unix socket paths must stay short
        defaults: dict[str, Any] = {
            "state_dir": tmp_path / "state",
            "control_socket": sock,
            "metrics_listen": "",
            "nodeagent_target": "",
        }
        return Config(**{**defaults, **kw})

    return make


@pytest.fixture
def mqtt_bridge(
    make_bridge: Callable[..., Bridge], broker: Broker, new_config: Callable[..., Config]
) -> Callable[..., Bridge]:
    """Start a bridge on the session broker and wait until it is subscribed."""

    def make(client_id: str | None = None, broker_log: str = "", **config: Any) -> Bridge:
        mqtt = broker.bridge_settings(client_id, broker_log=broker_log)
        bridge = make_bridge(new_config(mqtt=mqtt, **config))
        assert bridge.mqtt is not None
        wait_for(bridge.mqtt.connected.is_set, what="bridge connected")
        return bridge

    return make
