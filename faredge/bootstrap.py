"""The composition root of `mlsysops-faredge`: config → adapters → router → threads.

Nothing runs at import time and no global registry is used: `build()` returns a `Bridge` owning
every part, `start()`/`stop()` run them in dependency order. Tests build bridges with fakes in
place of the port resolver/opener and the node-agent sink.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server

from faredge.bridge.events import EventHub
from faredge.bridge.inventory import InventoryReporter, InventorySink
from faredge.bridge.router import Router
from faredge.bridge.serialports import Port, SerialManager
from faredge.bridge.worker import Worker
from faredge.channels import serial as serial_adapter
from faredge.channels.brokerlog import BrokerLogWatcher
from faredge.channels.mqtt import MqttChannel
from faredge.channels.nodeagent import GrpcInventorySink
from faredge.config import Config, PortSpec, SerialSettings
from faredge.control import ControlServer
from faredge.metrics import BridgeMetrics
from faredge.ota.manifest import KeyStore
from faredge.ota.service import OtaService
from faredge.ota.ticker import Ticker
from faredge.protocol.messages import check_device_id
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Registry

log = logging.getLogger("faredge")
OTA_SECRET = "ota-fleet.key"  # in the state directory: every device's OTA key derives from it
OTA_TICK_S = 5.0


class _Service(Protocol):
    def start(self) -> None: ...
    def stop(self) -> None: ...


class MetricsServer:
    """The Prometheus endpoint: bound by `start()` (not at construction), shut down by `stop()`."""

    def __init__(self, listen: str, registry: CollectorRegistry) -> None:
        self.listen = listen
        self._registry = registry
        self._shutdown: Callable[[], None] | None = None

    def start(self) -> None:
        host, _, port = self.listen.rpartition(":")
        server, _thread = start_http_server(int(port), host, registry=self._registry)
        self._shutdown = server.shutdown

    def stop(self) -> None:
        if self._shutdown is not None:
            self._shutdown()
            self._shutdown = None


@dataclass
class Bridge:
    config: Config
    registry: Registry
    metrics: BridgeMetrics
    router: Router
    worker: Worker
    mqtt: MqttChannel | None = None
    serial: SerialManager | None = None
    inventory: InventoryReporter | None = None
    control: ControlServer | None = None
    metrics_server: MetricsServer | None = None
    broker_log: BrokerLogWatcher | None = None
    ota: OtaService | None = None
    ota_ticker: Ticker | None = None
    _stoppers: list[Callable[[], Any]] = field(default_factory=list)

    def start(self) -> None:
        """Start the parts in dependency order: the worker before anything can enqueue."""
        self._stoppers.append(self.registry.close)  # stopped last: after the worker drained
        parts: tuple[_Service | None, ...] = (
            self.worker,
            self.inventory,
            self.serial,
            self.mqtt,
            self.ota,
            self.ota_ticker,
            self.broker_log,
            self.control,
            self.metrics_server,
        )
        for part in parts:
            if part is not None:
                part.start()
                self._stoppers.append(part.stop)
        log.info("far-edge bridge started")

    def stop(self) -> None:
        """Stop inputs first, then drain the queue, then the reporters (reverse start order)."""
        while self._stoppers:
            stop = self._stoppers.pop()
            try:
                stop()
            except Exception:
                log.exception("while stopping %s", stop)


def build(
    config: Config,
    *,
    metrics_registry: CollectorRegistry | None = None,
    inventory_sink: InventorySink | None = None,
    resolve_port: Callable[[PortSpec], str | None] = serial_adapter.resolve,
    open_port: Callable[[str, PortSpec], Port] = serial_adapter.open_port,
    events: EventHub | None = None,
) -> Bridge:
    """Every part of the bridge, connected and not started (`Bridge.start()` does that)."""
    registry = Registry(config.state_dir / "registry.json", max_devices=config.max_devices)
    metrics = BridgeMetrics(metrics_registry or CollectorRegistry(), max_devices=config.max_device_labels)
    router = Router(
        registry,
        metrics,
        RateLimitedLog(log, config.log_interval_s),
        events=events or EventHub(),
        max_bytes=config.max_message_bytes,
    )
    metrics.watch_devices(router.snapshot)
    worker = Worker(router, metrics, config.queue_size)
    bridge = Bridge(config, registry, metrics, router, worker)
    if config.metrics_listen:
        bridge.metrics_server = MetricsServer(config.metrics_listen, metrics.registry)
    if config.mqtt is not None:
        bridge.mqtt = MqttChannel(
            config.mqtt, worker.offer, lambda device, drop: router.drop("mqtt", device, drop)
        )
        router.downlinks["mqtt"] = bridge.mqtt
        bridge.ota = ota = OtaService(
            router, lambda: list(registry), KeyStore(config.state_dir / OTA_SECRET), bridge.mqtt, metrics.ota
        )
        bridge.mqtt.route("ota/get", ota.on_request)
        bridge.mqtt.route("ota/status", ota.on_status)
        bridge.ota_ticker = Ticker("faredge-ota-timeouts", OTA_TICK_S, ota.tick)
        if config.mqtt.broker_log:
            denials = metrics.broker_denials
            bridge.broker_log = BrokerLogWatcher(
                Path(config.mqtt.broker_log), lambda event, client: _denied(denials, event, client)
            )
    if config.serial is not None:
        bridge.serial = _serial_manager(config.serial, router, worker, resolve_port, open_port)
        router.downlinks["serial"] = bridge.serial
    if inventory_sink is None and config.nodeagent_target:
        inventory_sink = GrpcInventorySink(config.nodeagent_target)
    if inventory_sink is not None:
        bridge.inventory = InventoryReporter(
            inventory_sink,
            lambda: [d for d, _ in router.snapshot()],
            metrics,
            debounce_s=config.nodeagent_debounce_s,
        )
        router.set_inventory(bridge.inventory)
    bridge.control = ControlServer(config.control_socket, router, leases=bridge.serial, updates=bridge.ota)
    mqtt, serial = bridge.mqtt, bridge.serial
    metrics.watch_links(
        lambda: None if mqtt is None else mqtt.connected.is_set(),
        lambda: [] if serial is None else serial.port_states(),
    )
    return bridge


def _denied(counter: Any, event: str, client: str) -> None:
    counter.labels(event).inc()
    log.warning("broker: %s by client %s", event.replace("_", " "), client)


def _serial_manager(
    settings: SerialSettings,
    router: Router,
    worker: Worker,
    resolve_port: Callable[[PortSpec], str | None],
    open_port: Callable[[str, PortSpec], Port],
) -> SerialManager:
    for spec in settings.ports:
        if spec.id is not None:
            check_device_id(spec.id, "serial.ports[].id")
    return SerialManager(
        settings.ports,
        router,
        worker,
        resolve=resolve_port,
        open_port=open_port,
        scan_interval_s=settings.scan_interval_s,
        liveness_min_s=settings.liveness_min_s,
        retry_s=settings.retry_ms / 1000,
    )
