"""The shared node-API client: targets checked before any channel, one table from gRPC status
to domain errors, and the real gRPC wire (a servicer in this process, on a unix socket)."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest

from mlsysops.nodeapi import (
    AgentFailed,
    Busy,
    NodeAgentClient,
    NodeApiError,
    NotPossible,
    Refused,
    Rejected,
    TargetError,
    TlsFiles,
    Unreachable,
    check_target,
)
from mlsysops.nodeapi.errors import STATUS_ERRORS, error_for_status
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc as pb_grpc


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("", "target is empty"),
        ("unix:", "names no socket path"),
        ("/run/agent.sock", "is a path: write unix:/run/agent.sock"),
        ("agent.example", "neither unix:PATH nor host:port"),
        ("agent:0", "neither unix:PATH nor host:port"),
        ("agent:70000", "neither unix:PATH nor host:port"),
    ],
)
def test_bad_targets_are_refused_before_any_channel(target: str, reason: str) -> None:
    with pytest.raises(TargetError, match=reason):
        NodeAgentClient(target)


def test_tls_is_refused_on_a_unix_socket_and_half_a_key_pair_is_refused() -> None:
    with pytest.raises(TargetError, match="TLS is for TCP targets"):
        check_target("unix:/run/agent.sock", TlsFiles(ca=Path("/ca.pem")))
    with pytest.raises(TargetError, match="go together"):
        TlsFiles(cert=Path("/c.pem")).read()
    with pytest.raises(TargetError, match=re.escape("cannot read the TLS CA /nonexistent/ca.pem")):
        TlsFiles(ca=Path("/nonexistent/ca.pem")).read()


TEMPORARY = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED"}


def test_every_grpc_status_has_one_domain_error() -> None:
    expected = {
        "INVALID_ARGUMENT": Rejected,
        "OUT_OF_RANGE": Rejected,
        "UNAVAILABLE": Unreachable,
        "DEADLINE_EXCEEDED": Unreachable,
        "RESOURCE_EXHAUSTED": Busy,
        "ABORTED": Busy,
        "FAILED_PRECONDITION": NotPossible,
        "UNIMPLEMENTED": NotPossible,
        "PERMISSION_DENIED": Refused,
        "UNAUTHENTICATED": Refused,
    }
    assert {code: kind for code, (kind, _) in STATUS_ERRORS.items()} == expected
    for code in grpc.StatusCode:
        error = error_for_status(code.name, "why", target="unix:/a", method="Apply")
        assert isinstance(error, expected.get(code.name, AgentFailed))
        assert error.temporary == (code.name in TEMPORARY)
        assert (error.code, error.method, error.target) == (code.name, "Apply", "unix:/a")


class Servicer(pb_grpc.NodeConfigServicer):
    """Answers GetInventory, refuses Apply with the status the test sets, streams two events."""

    def __init__(self) -> None:
        self.refusal = grpc.StatusCode.INVALID_ARGUMENT
        self.reports: list[pb.ReportDevicesRequest] = []

    def GetInventory(self, request: Any, context: grpc.ServicerContext) -> pb.Inventory:
        return pb.Inventory(node_name="n1", api_version="mlsysops.nodeconfig.v1")

    def Apply(self, request: Any, context: grpc.ServicerContext) -> pb.ApplyResponse:
        context.abort(self.refusal, "cgroups.groups[0].cpu_quota_us: too small")
        raise AssertionError("abort returns no value")

    def ReportDevices(self, request: Any, context: grpc.ServicerContext) -> pb.ReportDevicesResponse:
        self.reports.append(request)
        return pb.ReportDevicesResponse(accepted=len(request.devices))

    def WatchEvents(self, request: Any, context: grpc.ServicerContext) -> Iterator[pb.Event]:
        yield pb.Event(kind=pb.Event.APPLIED, message="one")
        yield pb.Event(kind=pb.Event.DRIFT, message="two")
        context.abort(grpc.StatusCode.UNAVAILABLE, "agent stopping")


@pytest.fixture
def served() -> Iterator[tuple[str, Servicer]]:
    with tempfile.TemporaryDirectory() as tmp:
        target = f"unix:{tmp}/agent.sock"
        servicer = Servicer()
        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        pb_grpc.add_NodeConfigServicer_to_server(servicer, server)
        server.add_insecure_port(target)
        server.start()
        try:
            yield target, servicer
        finally:
            server.stop(0)


def test_calls_go_over_the_wire_and_refusals_become_domain_errors(served: tuple[str, Servicer]) -> None:
    target, servicer = served
    with NodeAgentClient(target, timeout=5) as client:
        assert client.inventory().node_name == "n1"
        assert client.report_devices("faredge", [pb.Device(id="d1"), pb.Device(id="d2")]) == 2
        assert servicer.reports[0].source == "faredge"
        with pytest.raises(Rejected, match=re.escape("nothing was changed: cgroups.groups[0].cpu_quota_us")):
            client.apply(pb.Profile(), requester="test")
        servicer.refusal = grpc.StatusCode.PERMISSION_DENIED
        with pytest.raises(Refused, match=f"permission denied by the agent at {target}"):
            client.apply(pb.Profile(), requester="test")


def test_a_stream_ends_in_a_domain_error_not_an_rpc_error(served: tuple[str, Servicer]) -> None:
    target, _ = served
    seen = []
    with NodeAgentClient(target, timeout=5) as client, pytest.raises(Unreachable, match="agent stopping"):
        for event in client.watch_events():
            seen.append(event.message)
    assert seen == ["one", "two"]


def test_an_absent_agent_is_unreachable_and_building_a_client_connects_nothing() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        client = NodeAgentClient(f"unix:{tmp}/nobody.sock", timeout=0.5)  # nothing listens: no error yet
        with pytest.raises(Unreachable) as caught:
            client.inventory()
        assert caught.value.temporary and isinstance(caught.value, NodeApiError)
        with pytest.raises(Unreachable, match=re.escape("did not come up within 0.2 s")):
            client.wait_ready(0.2)
        client.close()
