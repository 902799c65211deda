"""NodeConfig servicer: translate requests, call the service, translate answers. No policy here."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Protocol

import grpc

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc as pb_grpc
from nodeagent.api import convert
from nodeagent.api.errors import TooManyWatchers, grpc_errors, grpc_stream_errors
from nodeagent.api.guard import caller
from nodeagent.api.workloads import WorkloadRpcs
from nodeagent.errors import Unsupported
from nodeagent.service.devices import DeviceRegistry
from nodeagent.service.engine import Engine
from nodeagent.service.events import Event, EventBus, EventKind
from nodeagent.service.registry import MechanismSet
from nodeagent.service.workloads import WorkloadService
from nodeagent.telemetry.settings import CollectorSettings

#: Backstop for an idle WatchEvents stream to notice a vanished client (a cancel wakes it at once).
WATCH_POLL_S = 5.0


class TelemetryPort(Protocol):
    """What the API needs of nodeagent.telemetry.Telemetry."""

    def settings(self) -> list[CollectorSettings]: ...

    def configure(self, updates: Sequence[CollectorSettings]) -> list[CollectorSettings]: ...

    def metrics_url(self) -> str: ...


class WatchSlots:
    """A bounded number of concurrent WatchEvents streams (each holds a server thread)."""

    def __init__(self, limit: int) -> None:
        self._free = threading.BoundedSemaphore(limit)
        self.limit = limit

    def acquire(self) -> None:
        if not self._free.acquire(blocking=False):
            raise TooManyWatchers(f"already {self.limit} WatchEvents streams open (listen.max_watchers)")

    def release(self) -> None:
        self._free.release()


class NodeConfigServicer(WorkloadRpcs, pb_grpc.NodeConfigServicer):
    def __init__(
        self,
        *,
        node_name: str,
        engine: Engine,
        mechanisms: MechanismSet,
        devices: DeviceRegistry[pb.Device],
        events: EventBus,
        telemetry: TelemetryPort | None,
        max_watchers: int,
        workloads: WorkloadService | None = None,
    ) -> None:
        self._workloads = workloads
        self._node_name = node_name
        self._engine = engine
        self._mechanisms = mechanisms
        self._devices = devices
        self._events = events
        self._telemetry = telemetry
        self._watch_slots = WatchSlots(max_watchers)

    @grpc_errors
    def GetInventory(self, request: pb.GetInventoryRequest, context: grpc.ServicerContext) -> pb.Inventory:
        inventory = convert.inventory(self._node_name, self._mechanisms.reprobe(), self._devices.devices())
        inventory.runtimes.extend(self.runtimes_for_inventory())
        return inventory

    @grpc_errors
    def GetState(self, request: pb.GetStateRequest, context: grpc.ServicerContext) -> pb.NodeState:
        return convert.state_to_pb(self._engine.state())

    @grpc_errors
    def Apply(self, request: pb.ApplyRequest, context: grpc.ServicerContext) -> pb.ApplyResponse:
        result = self._engine.apply(  # requester: who the transport proved, not what the request says
            convert.profile_to_dict(request.profile), dry_run=request.dry_run, requester=caller().label
        )
        return pb.ApplyResponse(
            writes=[convert.write_to_pb(w) for w in result.writes],
            writes_performed=result.writes_performed,
            generation=result.generation,
            duration_ms=result.duration_ms,
        )

    @grpc_errors
    def Reset(self, request: pb.ResetRequest, context: grpc.ServicerContext) -> pb.ResetResponse:
        result = self._engine.reset(dry_run=request.dry_run)
        return pb.ResetResponse(
            writes=[convert.write_to_pb(w) for w in result.writes], writes_performed=result.writes_performed
        )

    @grpc_errors
    def GetTelemetryConfig(
        self, request: pb.GetTelemetryConfigRequest, context: grpc.ServicerContext
    ) -> pb.TelemetryConfig:
        telemetry = self._require_telemetry()
        return _telemetry_config(telemetry.settings(), telemetry.metrics_url())

    @grpc_errors
    def SetTelemetryConfig(
        self, request: pb.SetTelemetryConfigRequest, context: grpc.ServicerContext
    ) -> pb.TelemetryConfig:
        telemetry = self._require_telemetry()
        now = {c.name: c for c in telemetry.settings()}
        updates = [_update(c, now.get(c.name)) for c in request.collectors]
        current = telemetry.configure(updates)
        changed = ", ".join(f"{u.name}={'on' if u.enabled else 'off'}/{u.interval_ms}ms" for u in updates)
        self._events.publish(Event(EventKind.TELEMETRY_CONFIGURED, f"collectors: {changed or 'unchanged'}"))
        return _telemetry_config(current, telemetry.metrics_url())

    @grpc_stream_errors
    def WatchEvents(
        self, request: pb.WatchEventsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.Event]:
        kinds = convert.event_kinds(request.kinds)
        self._watch_slots.acquire()
        subscription = self._events.subscribe(kinds)
        try:
            context.add_callback(subscription.close)  # client gone: wake the wait below
            context.send_initial_metadata(())  # tells the client it is subscribed from now on
            while context.is_active() and not subscription.closed:
                event = subscription.get(timeout=WATCH_POLL_S)
                if event is not None:
                    message = convert.event_to_pb(event)
                    if subscription.dropped:  # this client fell behind: say how much it missed
                        message.details["dropped_before"] = str(subscription.dropped)
                    yield message
        finally:
            subscription.close()
            self._watch_slots.release()

    @grpc_errors
    def ReportDevices(
        self, request: pb.ReportDevicesRequest, context: grpc.ServicerContext
    ) -> pb.ReportDevicesResponse:
        return pb.ReportDevicesResponse(accepted=self._devices.report(request.source, list(request.devices)))

    def _require_telemetry(self) -> TelemetryPort:
        if self._telemetry is None:
            raise Unsupported("telemetry is disabled on this agent")
        return self._telemetry



def _update(requested: pb.Collector, current: CollectorSettings | None) -> CollectorSettings:
    """The collector's new settings: each field as given, an absent one as it is now (field
    presence: `{name, interval_ms}` re-times a collector, it must not also switch it off)."""
    enabled = requested.enabled if requested.HasField("enabled") else current.enabled if current else True
    interval = (
        requested.interval_ms if requested.HasField("interval_ms") else current.interval_ms if current else 0
    )
    return CollectorSettings(requested.name, enabled, interval)


def _telemetry_config(collectors: Sequence[CollectorSettings], metrics_url: str) -> pb.TelemetryConfig:
    return pb.TelemetryConfig(collectors=[_collector(c) for c in collectors], metrics_endpoint=metrics_url)


def _collector(settings: CollectorSettings) -> pb.Collector:
    return pb.Collector(name=settings.name, enabled=settings.enabled, interval_ms=settings.interval_ms)
