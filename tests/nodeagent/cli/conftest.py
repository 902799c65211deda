"""An in-process NodeConfig server on a private unix socket, answering canned responses and
recording every request, so CLI tests check both what is shown and what was (not) sent."""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb
from mlsysops.nodeconfig.v1 import nodeconfig_pb2_grpc


def inventory() -> pb.Inventory:
    return pb.Inventory(
        node_name="edge-1",
        api_version="mlsysops.nodeconfig.v1",
        agent_version="0.1.0",
        architecture="x86_64",
        memory_bytes=8 << 30,
        cpus=[
            pb.Cpu(
                id=0,
                cpufreq_available=True,
                available_governors=["performance", "powersave"],
                governor="powersave",
                scaling_min_khz=800_000,
                scaling_max_khz=2_400_000,
                current_khz=1_200_000,
            ),
            pb.Cpu(id=1, cpufreq_available=False),
        ],
        cgroup=pb.CgroupInfo(
            version="hybrid",
            root="mlsysops",
            controllers=[pb.CgroupController(name="cpu", version="v1", mount="/sys/fs/cgroup/cpu")],
        ),
        network=pb.NetworkInfo(
            interfaces=[
                pb.Interface(name="veth0", netns="demo", index=4, state="up", mtu=1500, root_qdisc="htb")
            ],
            features=[pb.Feature(name="qdisc/netem", supported=False, reason="sch_netem not available")],
        ),
        mechanisms=[pb.MechanismInfo(name="cpufreq", available=True)],
    )


def node_state() -> pb.NodeState:
    return pb.NodeState(
        generation=3,
        drifted=1,
        knobs=[
            pb.KnobState(
                mechanism="cgroups",
                key="app/cpu.cfs_quota_us",
                desired="50000",
                actual="20000",
                original="-1",
                drifted=True,
            ),
            pb.KnobState(
                mechanism="cpufreq", key="cpu0/scaling_governor", desired="performance", actual="performance"
            ),
        ],
        last_apply=Timestamp(seconds=1_700_000_000),
    )


def event(kind: int, key: str, message: str) -> pb.Event:
    return pb.Event(
        kind=kind,
        key=key,
        message=message,
        mechanism="cgroups",
        generation=3,
        time=Timestamp(seconds=1_700_000_000),
    )


@dataclass
class FakeAgent(nodeconfig_pb2_grpc.NodeConfigServicer):
    """Answers every RPC from canned data; `fail` makes the next calls abort with a status."""

    target: str = ""
    requests: list[tuple[str, Any]] = field(default_factory=list)
    fail: tuple[grpc.StatusCode, str] | None = None
    collectors: list[pb.Collector] = field(
        default_factory=lambda: [
            pb.Collector(name="cpu", enabled=True, interval_ms=10_000),
            pb.Collector(name="memory", enabled=True, interval_ms=10_000),
        ]
    )
    events: list[pb.Event] = field(default_factory=list)

    def _answer(self, name: str, request: Any, context: grpc.ServicerContext, response: Any) -> Any:
        self.requests.append((name, request))
        if self.fail is not None:
            context.abort(*self.fail)
        return response

    def GetInventory(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("GetInventory", request, context, inventory())

    def GetState(self, request: Any, context: grpc.ServicerContext) -> Any:
        return self._answer("GetState", request, context, node_state())

    def Apply(self, request: Any, context: grpc.ServicerContext) -> Any:
        writes = [
            pb.Write(mechanism="cgroups", key="app/cpu.cfs_quota_us", before="-1", after="50000"),
            pb.Write(mechanism="cgroups", key="app", after="directory"),
        ]
        return self._answer(
            "Apply",
            request,
            context,
            pb.ApplyResponse(
                writes=writes, writes_performed=0 if request.dry_run else 2, generation=4, duration_ms=0.8
            ),
        )

    def Reset(self, request: Any, context: grpc.ServicerContext) -> Any:
        writes = [pb.Write(mechanism="cgroups", key="app/cpu.cfs_quota_us", before="50000", after="-1")]
        return self._answer(
            "Reset",
            request,
            context,
            pb.ResetResponse(writes=writes, writes_performed=0 if request.dry_run else 1),
        )

    def GetTelemetryConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        config = pb.TelemetryConfig(
            collectors=self.collectors, metrics_endpoint="http://127.0.0.1:9465/metrics"
        )
        return self._answer("GetTelemetryConfig", request, context, config)

    def SetTelemetryConfig(self, request: Any, context: grpc.ServicerContext) -> Any:
        for update in request.collectors:
            for c in self.collectors:
                if c.name == update.name:
                    c.CopyFrom(update)
        config = pb.TelemetryConfig(
            collectors=self.collectors, metrics_endpoint="http://127.0.0.1:9465/metrics"
        )
        return self._answer("SetTelemetryConfig", request, context, config)

    def WatchEvents(self, request: Any, context: grpc.ServicerContext) -> Any:
        self.requests.append(("WatchEvents", request))
        kinds = set(request.kinds)
        for e in self.events:
            if not kinds or e.kind in kinds:
                yield e

    def sent(self, name: str) -> list[Any]:
        return [r for n, r in self.requests if n == name]


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    with tempfile.TemporaryDirectory(prefix="mlsysops-cli-") as tmp:
        target = f"unix:{Path(tmp) / 'agent.sock'}"
        fake = FakeAgent(target=target)
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        nodeconfig_pb2_grpc.add_NodeConfigServicer_to_server(fake, server)
        server.add_insecure_port(target)
        server.start()
        try:
            yield fake
        finally:
            server.stop(grace=None).wait(5)


BENCH = Path(__file__).resolve().parents[3] / "bench" / "nodeagent.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """bench/nodeagent.py as a module (its agent and cgroup helpers), when a real agent can run."""
    if importlib.util.find_spec("nodeagent.daemon") is None:
        pytest.skip("the agent daemon (nodeagent/daemon.py) is not in the tree yet")
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent writes a private subtree of the real cgroupfs")
    if not Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").exists():
        pytest.skip("no cgroup v1 cpu hierarchy at /sys/fs/cgroup/cpu")
    spec = importlib.util.spec_from_file_location("bench_nodeagent", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
