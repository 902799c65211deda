"""Prometheus metrics of the bridge, on an explicit registry (never the global one).

Per-device state (online, readings, memory, frequency, uptime, boot counter, message counts) is
not pushed into metric objects on every message: `DeviceCollector` reads the router's live state
when Prometheus scrapes, so telemetry costs no metric update at all on the hot path. Rare events
(drops, overflow, twin outcomes, inventory reports, serial retransmissions) are plain counters.

Device ids are label values, and devices are untrusted: `DeviceLabels` gives the first
`max_devices` known devices a label of their own; ids the registry does not know collapse to
"unknown" and known devices past the cap to "other" (their counters are summed, their gauges
omitted), so a misbehaving fleet cannot blow up the time-series count.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from faredge.live import Live
from faredge.ota.rollout import DONE as OTA_DONE
from faredge.ota.rollout import STATES as OTA_STATES
from faredge.registry import Device

UNKNOWN = "unknown"
OTHER = "other"


class DeviceLabels:
    def __init__(self, max_devices: int) -> None:
        self._max = max_devices
        self._given: set[str] = set()
        self._lock = threading.Lock()

    def label(self, device_id: str | None, known: bool) -> str:
        if not known or not device_id:
            return UNKNOWN
        if device_id in self._given:
            return device_id
        with self._lock:
            if len(self._given) < self._max:
                self._given.add(device_id)
                return device_id
        return OTHER


# Consistent copies of every device and its live state (faredge.bridge.router.Router.snapshot).
Snapshot = Callable[[], Sequence[tuple[Device, Live]]]


class DeviceCollector(Collector):
    """Yields the per-device metric families from a snapshot of the router's state."""

    def __init__(self, snapshot: Snapshot, labels: DeviceLabels) -> None:
        self._snapshot = snapshot
        self._labels = labels

    def collect(self) -> Iterator[Metric]:
        ns = "faredge"
        messages = CounterMetricFamily(
            f"{ns}_messages", "Valid messages processed", labels=["device", "transport", "kind"]
        )
        online = GaugeMetricFamily(
            f"{ns}_device_online", "1 when the device is online (summed for 'other')", labels=["device"]
        )
        reading = GaugeMetricFamily(
            f"{ns}_device_reading", "Latest sensor reading", labels=["device", "sensor"]
        )
        mem = GaugeMetricFamily(
            f"{ns}_device_mem_free_bytes", "Free heap reported by the device", labels=["device"]
        )
        freq = GaugeMetricFamily(
            f"{ns}_device_cpu_frequency_hz", "CPU frequency reported by the device", labels=["device"]
        )
        up = GaugeMetricFamily(
            f"{ns}_device_uptime_seconds", "Uptime reported by the device (`up`)", labels=["device"]
        )
        boot = GaugeMetricFamily(f"{ns}_device_boots", "Boot counter from the last birth", labels=["device"])
        in_sync = GaugeMetricFamily(
            f"{ns}_device_twin_in_sync",
            "1 when the device reported the desired version (alert on 0 for long)",
            labels=["device"],
        )
        lost = GaugeMetricFamily(
            f"{ns}_device_telemetry_lost",
            "QoS 1 telemetry messages the device's store-and-forward ring dropped since boot (last birth)",
            labels=["device"],
        )
        ota = GaugeMetricFamily(
            f"{ns}_device_ota_state",
            "1 for the state of the device's latest over-the-air update (pending, downloading, verifying,"
            " rebooting, confirmed, rolled_back, failed)",
            labels=["device", "state"],
        )
        ota_release = GaugeMetricFamily(
            f"{ns}_device_ota_release",
            "Release number of the device's latest over-the-air update",
            labels=["device"],
        )
        counts: dict[tuple[str, str, str], int] = defaultdict(int)
        online_by: dict[str, int] = defaultdict(int)
        for device, live in self._snapshot():
            label = self._labels.label(device.id, True)
            online_by[label] += 1 if device.online else 0
            for (transport, kind), n in live.counts.items():
                counts[label, transport, kind] += n
            if label == OTHER:
                continue
            boot.add_metric([label], device.boot)
            lost.add_metric([label], device.telemetry_lost)
            in_sync.add_metric([label], 1 if device.twin.in_sync else 0)
            if device.ota is not None:
                ota_release.add_metric([label], device.ota.release)
                for name in OTA_STATES:
                    ota.add_metric([label, name], 1 if name == device.ota.state else 0)
            for name, value in live.readings:
                if value is not None:
                    reading.add_metric([label, name], value)
            for family, value in ((mem, live.mem_free), (freq, live.freq), (up, live.up)):
                if value is not None:
                    family.add_metric([label], value)
        for key, n in counts.items():
            messages.add_metric(list(key), n)
        for label, n in online_by.items():
            online.add_metric([label], n)
        yield from (messages, online, reading, mem, freq, up, boot, lost, in_sync, ota, ota_release)


# The bridge's own links, read at scrape time: is the broker connected (None: no MQTT), and
# each configured serial port's state ("absent", "open", "identified").
BrokerConnected = Callable[[], bool | None]
PortStates = Callable[[], Sequence[tuple[str, str]]]
PORT_STATES = ("absent", "open", "identified")


class LinkCollector(Collector):
    def __init__(self, broker: BrokerConnected, ports: PortStates) -> None:
        self._broker = broker
        self._ports = ports

    def collect(self) -> Iterator[Metric]:
        connected = self._broker()
        if connected is not None:
            broker = GaugeMetricFamily(
                "faredge_broker_connected", "1 while the bridge's MQTT session is connected"
            )
            broker.add_metric([], 1 if connected else 0)
            yield broker
        ports = GaugeMetricFamily(
            "faredge_serial_port_state",
            "1 for the state each configured serial port is in (absent, open, identified)",
            labels=["port", "state"],
        )
        for port, state in self._ports():
            for name in PORT_STATES:
                ports.add_metric([port, name], 1 if name == state else 0)
        yield ports


REFUSALS = ("signature", "device", "replay", "manifest", "hash", "chunk")  # firmware ota.py's reasons


class OtaCounters:
    """What over-the-air updates count (faredge.ota.service.Counters)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.chunks = Counter("faredge_ota_chunks", "OTA chunks served to devices", registry=registry)
        self.bytes = Counter("faredge_ota_bytes", "OTA file bytes served to devices", registry=registry)
        self.updates = Counter(
            "faredge_ota_updates",
            "Over-the-air updates ended, by outcome (confirmed, rolled_back, failed)",
            ["outcome"],
            registry=registry,
        )
        for outcome in sorted(OTA_DONE):  # at 0 from the start: increase() sees the first one
            self.updates.labels(outcome)
        self.refusals = Counter(
            "faredge_ota_refusals",
            "Manifests a device refused that belong to no running update (replayed, forged), by reason",
            ["reason"],
            registry=registry,
        )

    def refused(self, reason: str) -> None:
        self.refusals.labels(reason if reason in REFUSALS else "other").inc()

    def chunk(self, size: int) -> None:
        self.chunks.inc()
        self.bytes.inc(size)

    def finished(self, state: str) -> None:
        self.updates.labels(state).inc()


class BridgeMetrics:
    def __init__(self, registry: CollectorRegistry, max_devices: int = 200) -> None:
        self.registry = registry
        self.labels = DeviceLabels(max_devices)
        ns = "faredge"
        self.dropped = Counter(
            f"{ns}_dropped",
            "Messages/frames dropped, by reason",
            ["device", "transport", "reason"],
            registry=registry,
        )
        self.queue_overflow = Counter(
            f"{ns}_queue_overflow",
            "Inbound messages refused because the queue was full (QoS 0 telemetry only)",
            ["transport"],
            registry=registry,
        )
        self.queue_depth = Gauge(
            f"{ns}_queue_depth", "Inbound messages waiting for the worker", registry=registry
        )
        self.twin_reports = Counter(
            f"{ns}_twin_reports", "twin/reported messages by outcome", ["outcome"], registry=registry
        )
        self.inventory = Counter(
            f"{ns}_inventory_reports", "ReportDevices calls to the node agent", ["result"], registry=registry
        )
        self.serial_frames = Counter(f"{ns}_serial_frames", "Serial frames", ["direction"], registry=registry)
        self.serial_retransmits = Counter(
            f"{ns}_serial_retransmits", "Reliable frames sent again", registry=registry
        )
        self.serial_gave_up = Counter(
            f"{ns}_serial_gave_up", "Reliable frames never acknowledged", registry=registry
        )
        self.identity_denials = Counter(
            f"{ns}_identity_denials",
            "Messages refused because they spoke for another device (identity) or came from a"
            " serial link before its birth (unidentified)",
            ["transport", "reason"],
            registry=registry,
        )
        self.broker_denials = Counter(
            f"{ns}_broker_denials",
            "What the broker refused or ended, from its log: takeover (a second connection with the"
            " same credentials replaced a session), auth_denied (a refused login)",
            ["event"],
            registry=registry,
        )
        self.ota = OtaCounters(registry)

    def watch_links(self, broker: BrokerConnected, ports: PortStates) -> None:
        """Export the broker session and serial port states (once, by the composition root)."""
        self.registry.register(LinkCollector(broker, ports))

    def watch_devices(self, snapshot: Snapshot) -> None:
        """Export per-device state read from `snapshot` at scrape time.

        Called once by whoever composes the bridge (`faredge.bootstrap.build`), never by a
        constructor: registering twice on one registry is an error, and tests choose.
        """
        self.registry.register(DeviceCollector(snapshot, self.labels))
