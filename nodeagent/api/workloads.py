"""The runtime and workload RPCs of NodeConfig: translate, call the workload service, translate back.

A mixin of NodeConfigServicer (the service owns every decision; errors map through the one
table in nodeagent/api/errors.py). Without a workload service (runtimes.enabled: false) every
call is FAILED_PRECONDITION, saying how to enable it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc
from google.protobuf import json_format

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from nodeagent.api.errors import grpc_errors
from nodeagent.errors import Unsupported
from nodeagent.mechanisms.runtime_switch import SwitchResult
from nodeagent.mechanisms.workload_spec import WorkloadSpec
from nodeagent.service.runtime_handlers import HandlerStatus
from nodeagent.service.workloads import WorkloadService, WorkloadStatus

INT64_FIELDS = ("cpu_quota_us", "cpu_period_us", "memory_max_bytes")


def runtime_to_pb(status: HandlerStatus) -> pb.Runtime:
    return pb.Runtime(
        handler=status.name,
        available=status.available,
        reason=status.reason,
        version=status.version,
        runtime_type=status.runtime_type,
        binary=status.binary_name,
        runtime_class_name=status.runtime_class_name,
    )


def spec_to_dict(spec: pb.WorkloadSpec) -> dict[str, Any]:
    """The request's spec as the service's input (proto field names; unset fields absent)."""
    data = json_format.MessageToDict(spec, preserving_proto_field_name=True)
    for key in INT64_FIELDS:  # the JSON mapping writes int64 as strings
        if key in data:
            data[key] = int(data[key])
    return data


def spec_to_pb(spec: WorkloadSpec) -> pb.WorkloadSpec:
    return pb.WorkloadSpec(
        name=spec.name,
        image=spec.image,
        handler=spec.handler,
        args=list(spec.args),
        env=list(spec.env),
        mounts=[pb.WorkloadMount(source=m.source, target=m.target, readonly=m.readonly) for m in spec.mounts],
        cgroup=spec.cgroup,
        netns=spec.netns,
        cpu_quota_us=spec.cpu_quota_us,
        cpu_period_us=spec.cpu_period_us,
        memory_max_bytes=spec.memory_max_bytes,
        readiness=list(spec.readiness),
        readiness_timeout_s=spec.readiness_timeout_s,
    )


def workload_to_pb(status: WorkloadStatus) -> pb.Workload:
    return pb.Workload(
        spec=spec_to_pb(status.spec),
        status=status.status,
        pid=status.pid,
        exit_status=status.exit_status,
        runtime=status.runtime,
        previous_handler=status.previous_handler,
    )


def switch_to_pb(result: SwitchResult, workload: WorkloadStatus | None) -> pb.SwitchRuntimeResponse:
    reply = pb.SwitchRuntimeResponse(
        outcome=result.outcome.value, handler=result.handler, steps=list(result.steps), error=result.error
    )
    if workload is not None:
        reply.workload.CopyFrom(workload_to_pb(workload))
    return reply


class WorkloadRpcs:
    """The six runtime RPCs; the servicer sets `_workloads`."""

    _workloads: WorkloadService | None

    def _require_workloads(self) -> WorkloadService:
        if self._workloads is None:
            raise Unsupported("runtimes are disabled on this agent (set runtimes.enabled: true)")
        return self._workloads

    def runtimes_for_inventory(self) -> list[pb.Runtime]:
        """What discovery found (no probe containers run for an inventory read)."""
        if self._workloads is None:
            return []
        return [runtime_to_pb(s) for s in self._workloads.handler_statuses()]

    @grpc_errors
    def ListRuntimes(
        self, request: pb.ListRuntimesRequest, context: grpc.ServicerContext
    ) -> pb.ListRuntimesResponse:
        service = self._require_workloads()
        found = service.discover() if request.refresh else service.handlers()
        return pb.ListRuntimesResponse(runtimes=[runtime_to_pb(s) for s in found])

    @grpc_errors
    def RunWorkload(self, request: pb.RunWorkloadRequest, context: grpc.ServicerContext) -> pb.Workload:
        tarball = Path(request.image_tarball) if request.image_tarball else None
        return workload_to_pb(self._require_workloads().run(spec_to_dict(request.spec), tarball))

    @grpc_errors
    def StopWorkload(self, request: pb.StopWorkloadRequest, context: grpc.ServicerContext) -> pb.Workload:
        return workload_to_pb(self._require_workloads().stop(request.name))

    @grpc_errors
    def ListWorkloads(
        self, request: pb.ListWorkloadsRequest, context: grpc.ServicerContext
    ) -> pb.ListWorkloadsResponse:
        return pb.ListWorkloadsResponse(
            workloads=[workload_to_pb(w) for w in self._require_workloads().workloads()]
        )

    @grpc_errors
    def GetWorkloadLogs(
        self, request: pb.GetWorkloadLogsRequest, context: grpc.ServicerContext
    ) -> pb.WorkloadLogs:
        service = self._require_workloads()
        return pb.WorkloadLogs(text=service.logs(request.name, request.tail_bytes or 64 << 10))

    @grpc_errors
    def SwitchRuntime(
        self, request: pb.SwitchRuntimeRequest, context: grpc.ServicerContext
    ) -> pb.SwitchRuntimeResponse:
        service = self._require_workloads()
        result = service.switch(request.name, request.handler, force=request.force)
        try:
            now: WorkloadStatus | None = service.get(request.name)
        except Exception:  # a workload that is down after a failed rollback has no status to show
            now = None
        return switch_to_pb(result, now)
