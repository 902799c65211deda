"""The bridge's core: one place where every inbound device message is judged and applied.

Transports hand in `Inbound` values (already authenticated: the MQTT topic id, the serial link's
identity) from a single worker thread; the router parses, checks the identity, updates registry,
twin, metrics and events, and answers through the transport's `Downlink`. Every rejection is a
`Dropped` counted by reason and logged once per device per interval; nothing here does I/O
beyond the registry file and the downlinks it is given.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple, Protocol

from faredge.bridge.events import EventHub
from faredge.errors import Dropped, Invalid
from faredge.metrics import BridgeMetrics
from faredge.protocol.frames import MAX_PAYLOAD
from faredge.protocol.messages import (
    MAX_MESSAGE_BYTES,
    Birth,
    Status,
    Telemetry,
    TwinGet,
    TwinReported,
    check_device_id,
    encode_desired,
    parse_message,
)
from faredge.protocol.settings import validate_settings
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Device, Registry
from faredge.twin import ReportOutcome, apply_report, set_desired

log = logging.getLogger(__name__)


class Inbound(NamedTuple):
    """One message from a transport. A NamedTuple, not a dataclass: it is built in paho's
    on_message for every message, and tuple construction is the cheapest immutable value."""

    transport: str  # "mqtt" or "serial"
    identity: str | None  # authenticated device id; None: serial link before its birth
    kind: str  # message name: birth, telemetry, twin/get, twin/reported, status
    payload: bytes
    port: str = ""  # serial port path
    done: Callable[[], object] | None = None  # acknowledges the message once processed (MQTT QoS 1)


class Downlink(Protocol):
    def send_desired(self, device: Device, payload: bytes) -> None: ...


class ChangeListener(Protocol):
    def changed(self) -> None: ...


@dataclass(slots=True)
class Live:
    """What the latest telemetry said; in memory only (see faredge.registry)."""

    last_seen: float = 0.0
    seq: int = -1
    up: int | None = None
    mem_free: int | None = None
    freq: int | None = None
    readings: tuple[tuple[str, float | None], ...] = ()  # the latest sample's, as parsed
    messages: int = 0  # telemetry messages
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (transport, kind) -> valid messages

    def copy(self) -> Live:
        return replace(self, counts=dict(self.counts))

    def to_json(self) -> dict[str, Any]:
        return {
            "last_seen": self.last_seen,
            "seq": self.seq,
            "up": self.up,
            "mem_free": self.mem_free,
            "freq": self.freq,
            "readings": dict(self.readings),
            "messages": self.messages,
        }


class Router:
    def __init__(
        self,
        registry: Registry,
        metrics: BridgeMetrics,
        log: RateLimitedLog,
        *,
        downlinks: Mapping[str, Downlink] | None = None,
        inventory: ChangeListener | None = None,
        events: EventHub | None = None,
        max_bytes: int = MAX_MESSAGE_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.registry = registry
        self.metrics = metrics
        self.events = events or EventHub()
        self.downlinks: dict[str, Downlink] = dict(downlinks or {})
        self._log = log
        self._inventory = inventory
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.RLock()
        self.live: dict[str, Live] = {}
        metrics.watch_devices(self.snapshot)

    def set_inventory(self, listener: ChangeListener) -> None:
        self._inventory = listener

    # ------------------------------------------------------------------ inbound
    def handle(self, msg: Inbound) -> None:
        """Process one inbound message; never raises for bad input (it is counted and dropped)."""
        self.handle_batch((msg,))

    def handle_batch(self, batch: Sequence[Inbound]) -> None:
        """Process messages in order under one lock acquisition (the worker's hot path).

        Each message is acknowledged (`done`) after it was processed or dropped; a bug in one
        is logged with its traceback and does not stop the others.
        """
        dispatch = self._dispatch
        with self._lock:
            for msg in batch:
                try:
                    dispatch(msg)
                except Dropped as drop:
                    self.drop(msg.transport, msg.identity, drop)
                except Exception:
                    log.exception("router failed on %s message from %s", msg.kind, msg.identity)
                finally:
                    if msg.done is not None:
                        msg.done()

    def drop(self, transport: str, device_id: str | None, drop: Dropped) -> None:
        """Count and (rate-limited) log a dropped message or frame."""
        label = self.metrics.labels.label(device_id, device_id in self.registry)
        self.metrics.dropped.labels(label, transport, drop.reason).inc()
        self._log.warning(
            f"{transport}/{device_id}/{drop.reason}",
            "dropped %s message from %s: %s",
            transport,
            device_id or "?",
            drop,
        )

    def _dispatch(self, msg: Inbound) -> None:
        parsed = parse_message(msg.kind, msg.payload, max_bytes=self._max_bytes)
        if msg.identity is None:
            if not isinstance(parsed, Birth):
                raise Dropped("unidentified", f"{msg.kind} before the link's birth")
        elif parsed.id != msg.identity:
            raise Dropped("identity", f"payload id {parsed.id!r} on the link of {msg.identity!r}")
        if type(parsed) is Birth:
            self._birth(parsed, msg)
            return
        device = self.registry.find(parsed.id)
        if device is None:
            raise Dropped("unknown_device", f"{msg.kind} from {parsed.id!r}, which never sent a birth")
        if type(parsed) is Telemetry:
            self._telemetry(parsed, device, msg.transport)
            return  # counted there: the hot path looks its live state up once
        if isinstance(parsed, TwinGet):
            self._send_desired(device)
        elif isinstance(parsed, TwinReported):
            self._reported(parsed, device)
        elif isinstance(parsed, Status):
            self._set_online(device, parsed.online, "status")
        self._count(device.id, msg.transport, msg.kind)

    def _count(self, device_id: str, transport: str, kind: str) -> None:
        live = self.live.get(device_id)
        if live is None:
            live = self.live[device_id] = Live()
        key = (transport, kind)
        live.counts[key] = live.counts.get(key, 0) + 1

    def _birth(self, birth: Birth, msg: Inbound) -> None:
        old = self.registry.find(birth.id)
        if old is None and self.registry.full:
            raise Dropped("capacity", f"registry full, {birth.id!r} not added")
        now = self._clock()
        new = replace(
            old or Device(birth.id),
            transport=msg.transport,
            board=birth.board,
            fw=birth.fw,
            boot=birth.boot,
            sensors=birth.sensors,
            online=True,
            last_seen=now,
            port=msg.port,
        )
        self.registry.put(new)
        self.live.setdefault(birth.id, Live()).last_seen = now
        self._count(birth.id, msg.transport, msg.kind)
        self.events.publish(
            {
                "event": "birth",
                "id": birth.id,
                "transport": msg.transport,
                "fw": birth.fw,
                "boot": birth.boot,
                "sensors": list(birth.sensors),
            }
        )
        if old is None or (old.online, old.sensors, old.fw, old.board) != (
            True,
            new.sensors,
            new.fw,
            new.board,
        ):
            self._inventory_changed()

    def _telemetry(self, tel: Telemetry, device: Device, transport: str) -> None:
        live = self.live.get(device.id)
        if live is None:
            live = self.live[device.id] = Live()
        live.last_seen = self._clock()
        live.seq = tel.seq
        live.messages += 1
        key = (transport, "telemetry")
        live.counts[key] = live.counts.get(key, 0) + 1
        live.readings = tel.samples[-1].readings  # a sensor disabled since is no longer shown
        for sample in tel.samples:
            if sample.mem_free is not None:
                live.mem_free = sample.mem_free
            if sample.freq is not None:
                live.freq = sample.freq
            if sample.up is not None:
                live.up = sample.up
        if not device.online:
            self._set_online(device, True, "telemetry")
        if self.events.subscribers:
            self.events.publish(
                {"event": "telemetry", "id": device.id, "seq": tel.seq, "readings": dict(live.readings)}
            )

    def _reported(self, rep: TwinReported, device: Device) -> None:
        twin, outcome = apply_report(device.twin, rep.version, rep.settings, rep.errors)
        self.metrics.twin_reports.labels(outcome.value).inc()
        if outcome is ReportOutcome.STALE:
            raise Dropped("stale_report", f"version {rep.version} < reported {device.twin.reported_version}")
        device = replace(device, twin=twin)
        self.registry.put(device)
        self.events.publish(
            {
                "event": "twin",
                "id": device.id,
                "outcome": outcome.value,
                "reported_version": twin.reported_version,
                "desired_version": twin.desired_version,
                "errors": twin.errors,
            }
        )
        if outcome is ReportOutcome.AHEAD:
            self._send_desired(device)

    # ------------------------------------------------------------------ state changes
    def mark_offline(self, device_id: str, reason: str) -> None:
        """Transport-detected loss (port vanished, liveness timeout)."""
        with self._lock:
            device = self.registry.find(device_id)
            if device is not None:
                self._set_online(device, False, reason)

    def _set_online(self, device: Device, online: bool, reason: str) -> None:
        if device.online == online:
            return
        now = self._clock()
        live = self.live.get(device.id)
        self.registry.put(replace(device, online=online, last_seen=live.last_seen if live else now))
        self.events.publish({"event": "online" if online else "offline", "id": device.id, "reason": reason})
        self._inventory_changed()

    def set_desired(self, device_id: str, settings: Mapping[str, Any]) -> Device:
        """Validate and merge desired settings, persist, and send them to the device."""
        check_device_id(device_id, "device")
        changes = validate_settings(settings)
        with self._lock:
            device = self.registry.get(device_id)
            twin = set_desired(device.twin, changes)
            size = len(encode_desired(device_id, twin.desired_version, twin.desired))
            limit = MAX_PAYLOAD if device.transport == "serial" else self._max_bytes
            if size > limit:
                raise Invalid(
                    "settings", f"the desired state would be {size} bytes, over {limit} for {device_id}"
                )
            if twin is not device.twin:
                device = replace(device, twin=twin)
                self.registry.put(device)
                self.events.publish(
                    {
                        "event": "desired",
                        "id": device_id,
                        "version": twin.desired_version,
                        "settings": twin.desired,
                    }
                )
            self._send_desired(device)
            return device

    def _send_desired(self, device: Device) -> None:
        downlink = self.downlinks.get(device.transport)
        if downlink is None:  # e.g. serial disabled since the device registered: sent on its twin/get
            self._log.warning(
                f"downlink/{device.transport}",
                "no %s downlink: desired state of %s kept",
                device.transport,
                device.id,
            )
            return
        downlink.send_desired(
            device, encode_desired(device.id, device.twin.desired_version, device.twin.desired)
        )

    def _inventory_changed(self) -> None:
        if self._inventory is not None:
            self._inventory.changed()

    # ------------------------------------------------------------------ views
    def view(self, device_id: str) -> dict[str, Any]:
        with self._lock:
            device = self.registry.get(device_id)
            live = self.live.get(device_id, Live())
            return {**device.to_json(), "live": live.to_json(), "in_sync": device.twin.in_sync}

    def views(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.view(d.id) for d in self.registry]

    def snapshot(self) -> list[tuple[Device, Live]]:
        """Consistent copies (scrapes and inventory reports run in other threads)."""
        with self._lock:
            return [(d, self.live.get(d.id, Live()).copy()) for d in self.registry]
