"""The node agent's `ReportDevices` (proto mlsysops.nodeconfig.v1), on the shared node-API client."""

from __future__ import annotations

from collections.abc import Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from faredge.errors import Unavailable
from faredge.registry import Device
from mlsysops.nodeapi import NodeAgentClient, NodeApiError
from mlsysops.nodeconfig.v1 import nodeconfig_pb2

SOURCE = "faredge"


def to_proto(device: Device) -> nodeconfig_pb2.Device:
    seen = Timestamp()
    seen.FromNanoseconds(int(device.last_seen * 1e9))
    attributes = {
        "boot": str(device.boot),
        "twin_desired_version": str(device.twin.desired_version),
        "twin_reported_version": str(device.twin.reported_version),
    }
    if device.port:
        attributes["port"] = device.port
    return nodeconfig_pb2.Device(
        id=device.id,
        kind=device.board,
        transport=device.transport,
        online=device.online,
        sensors=list(device.sensors),
        firmware_version=device.fw,
        last_seen=seen,
        attributes=attributes,
    )


class GrpcInventorySink:
    """One client for the bridge's lifetime; its channel connects on the first report and gRPC
    reconnects it by itself."""

    def __init__(self, target: str, timeout_s: float = 5.0) -> None:
        self.target = target
        self._client = NodeAgentClient(target, timeout=timeout_s)

    def report(self, devices: Sequence[Device]) -> int:
        try:
            return self._client.report_devices(SOURCE, [to_proto(d) for d in devices])
        except NodeApiError as exc:
            raise Unavailable(f"ReportDevices to {self.target}: {exc.code}: {exc.details}") from exc

    def close(self) -> None:
        self._client.close()
