"""The MQTT topic scheme `mlsysops/v1/dev/<id>/<message>` (docs/faredge-protocol.md)."""

from __future__ import annotations

PREFIX = "mlsysops/v1/dev/"
DEVICE_WRITES = ("birth", "telemetry", "twin/get", "twin/reported", "status")
DEVICE_READS = ("twin/desired",)
# Over-the-air updates (faredge.ota): on a session of their own, not the router's.
OTA_WRITES = ("ota/get", "ota/status")
OTA_READS = ("ota/manifest", "ota/chunk")


def topic(device_id: str, message: str) -> str:
    return f"{PREFIX}{device_id}/{message}"


def split_topic(name: str) -> tuple[str, str] | None:
    """`(device_id, message)` of a device topic, or None for anything outside the scheme."""
    if not name.startswith(PREFIX):
        return None
    device_id, sep, message = name[len(PREFIX) :].partition("/")
    if not sep or not device_id or not message:
        return None
    return device_id, message
