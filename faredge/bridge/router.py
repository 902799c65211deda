"""The bridge's core: one place where every inbound device message is judged and applied.

Transports hand in `Inbound` values (already authenticated: the MQTT topic id, the serial link's
identity) from a single worker thread. The router parses each one, checks its identity
(`identity`) and hands it to the part that owns its concern: births and online/offline to
`Presence`, telemetry to the live table, twin messages to `TwinSync`, which answers through the
transports' downlinks. Every rejection is a `Dropped` counted by reason and logged once per
device per interval. The router's lock serialises the parts, which are not thread-safe alone:
the worker, the serial sessions (offline) and the control socket (set, views) all come in here.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from faredge.bridge.downlink import Downlink, DownlinkSender
from faredge.bridge.events import ChangeListener, DeviceEvents, EventHub
from faredge.bridge.identity import check_identity
from faredge.bridge.presence import Presence
from faredge.bridge.twinsync import TwinSync
from faredge.errors import Dropped
from faredge.live import Live, LiveTable
from faredge.metrics import BridgeMetrics
from faredge.ota.rollout import OtaState
from faredge.protocol.inbound import Inbound
from faredge.protocol.messages import (
    MAX_MESSAGE_BYTES,
    Birth,
    Status,
    Telemetry,
    TwinGet,
    TwinReported,
    check_device_id,
    parse_message,
)
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Device, Registry

log = logging.getLogger(__name__)


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
        self.live = LiveTable()
        self._log = log
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.RLock()
        self._emit = DeviceEvents(self.events, inventory)
        self._downlink = DownlinkSender(log, downlinks, max_bytes)
        self._presence = Presence(registry, self.live, self._emit, clock)
        self._twins = TwinSync(registry, metrics, self._emit, self._downlink)

    @property
    def downlinks(self) -> dict[str, Downlink]:
        """Transport name → downlink; the composition root adds one per enabled transport."""
        return self._downlink.downlinks

    def set_inventory(self, listener: ChangeListener) -> None:
        self._emit.inventory = listener

    # ------------------------------------------------------------------ inbound
    def handle(self, msg: Inbound) -> None:
        """Process one inbound message; never raises for bad input (it is counted and dropped)."""
        self.handle_batch((msg,))

    def handle_batch(self, batch: Sequence[Inbound]) -> None:
        """Process messages in order under one lock acquisition (the worker's hot path).

        The batch's registry changes are made durable with one fsync (group commit), then each
        message is acknowledged (`done`): a QoS 1 birth is never acknowledged before its device
        is on disk. A bug in one message is logged with its traceback and does not stop the
        others; a registry that cannot be written acknowledges nothing (the broker redelivers).
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
            try:
                self.registry.flush()
            except OSError:
                log.exception("registry not durable: %d messages left unacknowledged", len(batch))
                return
        for msg in batch:
            if msg.done is not None:
                msg.done()

    def drop(self, transport: str, device_id: str | None, drop: Dropped) -> None:
        """Count and (rate-limited) log a dropped message or frame."""
        label = self.metrics.labels.label(device_id, device_id in self.registry)
        self.metrics.dropped.labels(label, transport, drop.reason).inc()
        if drop.reason in ("identity", "unidentified"):
            self.metrics.identity_denials.labels(transport, drop.reason).inc()
        self._log.warning(
            f"{transport}/{device_id}/{drop.reason}",
            "dropped %s message from %s: %s",
            transport,
            device_id or "?",
            drop,
        )

    def _dispatch(self, msg: Inbound) -> None:
        parsed = parse_message(msg.kind, msg.payload, max_bytes=self._max_bytes)
        if parsed.id != msg.identity:  # the same id needs no further look (hot path: no call)
            check_identity(parsed, msg.identity, msg.kind)
        if type(parsed) is Birth:
            self._presence.birth(parsed, msg.transport, msg.port)
            return
        device = self.registry.find(parsed.id)
        if device is None:
            raise Dropped("unknown_device", f"{msg.kind} from {parsed.id!r}, which never sent a birth")
        if type(parsed) is Telemetry:
            self._telemetry(parsed, device, msg.transport)
            return  # counted by the live table: the hot path looks the device's state up once
        if isinstance(parsed, TwinGet):
            self._twins.requested(device)
        elif isinstance(parsed, TwinReported):
            self._twins.reported(parsed, device)
        elif isinstance(parsed, Status):
            self._presence.set_online(device, parsed.online, "status")
        self.live.count(device.id, msg.transport, msg.kind)

    def _telemetry(self, tel: Telemetry, device: Device, transport: str) -> None:
        live = self.live.record(tel, transport, self._clock())
        if not device.online:
            self._presence.set_online(device, True, "telemetry")
        if self.events.subscribers:  # checked here too: the event is built for listeners only
            self._emit.telemetry(device.id, tel.seq, live.readings)

    # ------------------------------------------------------------------ from other threads
    def mark_offline(self, device_id: str, reason: str) -> None:
        """Transport-detected loss (port vanished, liveness timeout)."""
        with self._lock:
            device = self.registry.find(device_id)
            if device is not None:
                self._presence.set_online(device, False, reason)
                self.registry.flush()

    def set_desired(self, device_id: str, settings: Mapping[str, Any]) -> Device:
        """Validate and merge desired settings, persist, and send them to the device."""
        check_device_id(device_id, "device")
        with self._lock:
            return self._twins.set_desired(device_id, settings)

    def unset_desired(self, device_id: str, keys: list[str]) -> Device:
        """Remove keys from the desired settings, persist, and send the rest to the device."""
        check_device_id(device_id, "device")
        with self._lock:
            return self._twins.unset_desired(device_id, keys)

    def update_ota(self, device_id: str, change: Callable[[Device], OtaState | None]) -> Device | None:
        """Apply `change` to the device's OTA state under the router's lock (births and twin
        changes of the same device cannot interleave) and make it durable; the new device, or
        None when the device is unknown or `change` returned None (nothing to record)."""
        with self._lock:
            device = self.registry.find(device_id)
            state = None if device is None else change(device)
            if device is None or state is None:
                return None
            device = replace(device, ota=state)
            self.registry.put(device)
            self.registry.flush()
            return device

    def view(self, device_id: str) -> dict[str, Any]:
        with self._lock:
            device = self.registry.get(device_id)
            live = self.live.copy_of(device_id)
        return {**device.to_json(), "live": live.to_json(), "in_sync": device.twin.in_sync}

    def views(self) -> list[dict[str, Any]]:
        with self._lock:
            return [self.view(d.id) for d in self.registry]

    def snapshot(self) -> list[tuple[Device, Live]]:
        """Consistent copies (scrapes and inventory reports run in other threads)."""
        with self._lock:
            return [(d, self.live.copy_of(d.id)) for d in self.registry]
