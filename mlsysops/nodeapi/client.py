"""The gRPC adapter to a node agent: the only module outside the agent's server that imports grpc.

`NodeAgentClient` checks its target when built and connects on first use (gRPC channels are
lazy, and so are we: building a client in a constructor or a config loader opens nothing). Every
call has a deadline; every failure leaves as one of the domain errors of `errors`, so callers
never see `grpc.RpcError`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable, Sequence
from types import TracebackType
from typing import Any, TypeVar, cast

import grpc
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc

from mlsysops.nodeapi.errors import NodeApiError, Unreachable, error_for_status
from mlsysops.nodeapi.target import TlsFiles, check_target
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc

T = TypeVar("T")
R = TypeVar("R", bound=Message)


class NodeAgentClient:
    """A client of the node agent at `target`; close it (or use it in a with block) when done.

    Thread-safe: one channel serves every thread, as gRPC intends.
    """

    def __init__(self, target: str, tls: TlsFiles | None = None, timeout: float = 10.0) -> None:
        self.target = check_target(target, tls)
        self.tls = tls
        self.timeout = timeout
        self._lock = threading.Lock()
        self._channel: grpc.Channel | None = None
        self._stub: Any = None

    # ------------------------------------------------------------------ the API's calls

    def inventory(self) -> pb.Inventory:
        return self._unary("GetInventory", pb.GetInventoryRequest(), pb.Inventory)

    def state(self) -> pb.NodeState:
        return self._unary("GetState", pb.GetStateRequest(), pb.NodeState)

    def apply(self, profile: pb.Profile, *, requester: str, dry_run: bool = False) -> pb.ApplyResponse:
        request = pb.ApplyRequest(profile=profile, dry_run=dry_run, requester=requester)
        return self._unary("Apply", request, pb.ApplyResponse)

    def reset(self, *, dry_run: bool = False) -> pb.ResetResponse:
        return self._unary("Reset", pb.ResetRequest(dry_run=dry_run), pb.ResetResponse)

    def telemetry_config(self) -> pb.TelemetryConfig:
        return self._unary("GetTelemetryConfig", pb.GetTelemetryConfigRequest(), pb.TelemetryConfig)

    def set_telemetry_config(self, collectors: Iterable[pb.Collector]) -> pb.TelemetryConfig:
        request = pb.SetTelemetryConfigRequest(collectors=list(collectors))
        return self._unary("SetTelemetryConfig", request, pb.TelemetryConfig)

    def report_devices(self, source: str, devices: Sequence[pb.Device]) -> int:
        """Replace what `source` reported before with `devices`; the number the agent accepted."""
        request = pb.ReportDevicesRequest(source=source, devices=list(devices))
        response = self._unary("ReportDevices", request, pb.ReportDevicesResponse)
        return int(response.accepted)

    def runtimes(self, *, refresh: bool = False) -> list[pb.Runtime]:
        """The node's runtime handlers; `refresh` runs the probe containers again."""
        reply = self._unary("ListRuntimes", pb.ListRuntimesRequest(refresh=refresh), pb.ListRuntimesResponse)
        return list(reply.runtimes)

    def run_workload(self, spec: pb.WorkloadSpec, *, image_tarball: str = "") -> pb.Workload:
        request = pb.RunWorkloadRequest(spec=spec, image_tarball=image_tarball)
        return self._unary("RunWorkload", request, pb.Workload)

    def stop_workload(self, name: str) -> pb.Workload:
        return self._unary("StopWorkload", pb.StopWorkloadRequest(name=name), pb.Workload)

    def workloads(self) -> list[pb.Workload]:
        reply = self._unary("ListWorkloads", pb.ListWorkloadsRequest(), pb.ListWorkloadsResponse)
        return list(reply.workloads)

    def workload_logs(self, name: str, *, tail_bytes: int = 0) -> str:
        request = pb.GetWorkloadLogsRequest(name=name, tail_bytes=tail_bytes)
        return str(self._unary("GetWorkloadLogs", request, pb.WorkloadLogs).text)

    def switch_runtime(self, name: str, handler: str, *, force: bool = False) -> pb.SwitchRuntimeResponse:
        """Move a workload to `handler`; a failed switch is an answer (outcome rolled_back), not an error."""
        request = pb.SwitchRuntimeRequest(name=name, handler=handler, force=force)
        return self._unary("SwitchRuntime", request, pb.SwitchRuntimeResponse)

    def watch_events(self, kinds: Iterable[pb.Event.Kind] = ()) -> Generator[pb.Event, None, None]:
        """Events from now on, until the caller stops iterating (the stream is then cancelled)."""
        stream = self._call("WatchEvents", lambda stub: stub.WatchEvents(pb.WatchEventsRequest(kinds=kinds)))
        try:
            while True:
                try:
                    event = next(stream)
                except StopIteration:
                    return
                except grpc.RpcError as exc:
                    raise _domain_error(exc, self.target, "WatchEvents") from None
                yield event
        finally:
            stream.cancel()

    def wait_ready(self, timeout: float) -> None:
        """Block until the agent's health service answers SERVING; Unreachable after timeout seconds."""
        channel = self._open()
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise self._not_ready(f"did not come up within {timeout:g} s") from None
        health = health_pb2_grpc.HealthStub(channel)
        reply = self._translated(
            "Health.Check", lambda: health.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        )
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            raise self._not_ready("is not serving")

    def _not_ready(self, why: str) -> Unreachable:
        return Unreachable(
            f"the node agent at {self.target} {why}",
            target=self.target,
            method="Health.Check",
            code="UNAVAILABLE",
            details=why,
        )

    # ------------------------------------------------------------------ life cycle

    def close(self) -> None:
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = self._stub = None

    def __enter__(self) -> NodeAgentClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _open(self) -> grpc.Channel:
        with self._lock:
            if self._channel is None:
                if self.tls is None:
                    self._channel = grpc.insecure_channel(self.target)
                else:
                    ca, key, cert = self.tls.read()
                    credentials = grpc.ssl_channel_credentials(ca, key, cert)
                    self._channel = grpc.secure_channel(self.target, credentials)
                self._stub = nodeconfig_pb2_grpc.NodeConfigStub(self._channel)  # type: ignore[no-untyped-call]
            return self._channel

    def _unary(self, method: str, request: Message, reply: type[R]) -> R:
        return cast(R, self._call(method, lambda stub: getattr(stub, method)(request, timeout=self.timeout)))

    def _call(self, method: str, call: Callable[[Any], T]) -> T:
        self._open()
        return self._translated(method, lambda: call(self._stub))

    def _translated(self, method: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except grpc.RpcError as exc:
            raise _domain_error(exc, self.target, method) from None


def _domain_error(exc: grpc.RpcError, target: str, method: str) -> NodeApiError:
    """grpc raises objects that are both RpcError and Call; a bare RpcError has no status."""
    status, details = getattr(exc, "code", None), getattr(exc, "details", None)
    code = status() if callable(status) else grpc.StatusCode.UNKNOWN
    text = details() if callable(details) else str(exc)
    return error_for_status(code.name, text or "", target=target, method=method)
