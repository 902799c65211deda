"""Sending desired states to devices through their transport's downlink (MQTT or serial).

A device whose transport has no downlink now (serial disabled since it registered, say) keeps
its desired state in the registry; it gets it when it asks (`twin/get`) over a transport that
has one. The payload limit is the transport's: a serial frame carries at most 1024 bytes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from faredge.protocol.frames import MAX_PAYLOAD
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Device
from faredge.twin.reconcile import desired_message


class Downlink(Protocol):
    def send_desired(self, device: Device, payload: bytes) -> None: ...


class DownlinkSender:
    def __init__(self, log: RateLimitedLog, downlinks: Mapping[str, Downlink] | None, max_bytes: int) -> None:
        self.downlinks: dict[str, Downlink] = dict(downlinks or {})
        self._log = log
        self._max_bytes = max_bytes

    def limit(self, transport: str) -> int:
        """The largest desired message the transport carries."""
        return MAX_PAYLOAD if transport == "serial" else self._max_bytes

    def send_desired(self, device: Device) -> None:
        downlink = self.downlinks.get(device.transport)
        if downlink is None:
            self._log.warning(
                f"downlink/{device.transport}",
                "no %s downlink: desired state of %s kept",
                device.transport,
                device.id,
            )
            return
        downlink.send_desired(device, desired_message(device.id, device.twin))
