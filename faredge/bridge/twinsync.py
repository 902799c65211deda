"""Keeping device twins in step: `devices set` → desired state → device → `twin/reported`.

The decisions are pure (`faredge.twin.reconcile`); this part persists them, counts report
outcomes, tells monitor clients and sends the desired state. Called by the router under its lock.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from faredge.bridge.downlink import DownlinkSender
from faredge.bridge.events import DeviceEvents
from faredge.errors import Dropped, Invalid
from faredge.metrics import BridgeMetrics
from faredge.protocol.messages import TwinReported
from faredge.protocol.settings import KNOBS, validate_settings
from faredge.registry import Device, Registry
from faredge.twin import unset_desired
from faredge.twin.reconcile import check_capabilities, decide_report, plan_desired


class TwinSync:
    def __init__(
        self, registry: Registry, metrics: BridgeMetrics, events: DeviceEvents, downlink: DownlinkSender
    ) -> None:
        self._registry = registry
        self._metrics = metrics
        self._events = events
        self._downlink = downlink

    def set_desired(self, device_id: str, settings: Mapping[str, Any]) -> Device:
        """Validate and merge desired settings, persist them, and send the desired state."""
        changes = validate_settings(settings)  # first: a bad request is refused for any device
        device = self._registry.get(device_id)
        check_capabilities(device_id, device.sensors, device.freqs, changes)
        twin = plan_desired(device_id, device.twin, changes, limit=self._downlink.limit(device.transport))
        if twin is not device.twin:
            device = replace(device, twin=twin)
            self._registry.put(device)
            self._registry.flush()  # durable before it is sent or the CLI hears "done"
            self._events.desired(device_id, twin)
        self._downlink.send_desired(device)
        return device

    def unset_desired(self, device_id: str, keys: list[str]) -> Device:
        """Remove keys from the desired state (validated names), persist, send the rest."""
        for key in keys:
            if key not in KNOBS:
                raise Invalid(f"keys.{key}", f"unknown setting (known: {', '.join(KNOBS)})")
        device = self._registry.get(device_id)
        twin = unset_desired(device.twin, keys)
        if twin is not device.twin:
            device = replace(device, twin=twin)
            self._registry.put(device)
            self._registry.flush()
            self._events.desired(device_id, twin)
            self._downlink.send_desired(device)
        return device

    def requested(self, device: Device) -> None:
        """`twin/get`: a device that was away asks for its full desired state."""
        self._downlink.send_desired(device)

    def reported(self, report: TwinReported, device: Device) -> None:
        decision = decide_report(device.twin, report)
        self._metrics.twin_reports.labels(decision.outcome.value).inc()
        if decision.stale:
            raise Dropped(
                "stale_report", f"version {report.version} < reported {device.twin.reported_version}"
            )
        device = replace(device, twin=decision.twin)
        self._registry.put(device)
        self._events.reported(device.id, decision.outcome.value, decision.twin)
        if decision.resend:
            self._downlink.send_desired(device)
