"""gRPC adapter to the node agent's `ReportDevices` (proto mlsysops.nodeconfig.v1)."""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from faredge.errors import Unavailable
from faredge.registry import Device
from mlsysops.nodeconfig.v1 import nodeconfig_pb2, nodeconfig_pb2_grpc

DEFAULT_TARGET = "unix:/run/mlsysops/nodeagent.sock"
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
    """One channel for the bridge's lifetime; grpc reconnects it by itself."""

    def __init__(self, target: str = DEFAULT_TARGET, timeout_s: float = 5.0) -> None:
        self.target = target
        self._timeout = timeout_s
        self._channel = grpc.insecure_channel(target)
        self._stub = nodeconfig_pb2_grpc.NodeConfigStub(self._channel)

    def report(self, devices: Sequence[Device]) -> int:
        request = nodeconfig_pb2.ReportDevicesRequest(source=SOURCE, devices=[to_proto(d) for d in devices])
        try:
            return int(self._stub.ReportDevices(request, timeout=self._timeout).accepted)
        except grpc.RpcError as exc:
            code = exc.code() if hasattr(exc, "code") else None
            raise Unavailable(
                f"ReportDevices to {self.target}: {code}: {exc.details() if code else exc}"
            ) from exc

    def close(self) -> None:
        self._channel.close()
