"""Helpers of the controller integration tests (and the placement bench): the stand-in API
server on sys.path, polling with a deadline, a fake node-agent gateway, fixture documents and
controllers wired by the real composition root, stopped at teardown."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

STANDIN = Path(__file__).resolve().parents[1] / "standin"
FIXTURES = Path(__file__).resolve().parent / "data"
sys.path.insert(0, str(STANDIN))

from kube_standin import StandIn  # noqa: E402

from controller.kube.client import api_client_for_host  # noqa: E402
from controller.mechanisms import MechanismRegistry  # noqa: E402
from controller.model import load_documents  # noqa: E402
from controller.policies import PolicyRegistry  # noqa: E402
from controller.policies.placer import ConstraintAwarePlacer  # noqa: E402
from controller.policies.static import StaticPlacedComponents  # noqa: E402
from controller.reconcile.bootstrap import Config, build  # noqa: E402
from controller.reconcile.loop import Controller  # noqa: E402
from controller.reconcile.queue import Backoff  # noqa: E402
from mlsysops.nodeconfig.v1 import nodeconfig_pb2  # noqa: E402

NAMESPACE = "default"
APP = "camera-pipeline"


class FakeAgents:
    """A node-agent gateway recording calls: each apply reports writes only when the profile
    differs from the last one applied to that target (as the real agent does)."""

    def __init__(self, inventories: dict[str, nodeconfig_pb2.Inventory] | None = None) -> None:
        self.inventories = inventories or {}
        self.applied: dict[str, nodeconfig_pb2.Profile] = {}
        self.calls: list[tuple[str, str]] = []
        self.resets: list[str] = []
        self.telemetry: dict[str, dict[str, tuple[bool, int]]] = {}  # target -> collector -> (on, ms)

    def apply(self, target: str, profile: nodeconfig_pb2.Profile) -> nodeconfig_pb2.ApplyResponse:
        self.calls.append(("apply", target))
        changed = self.applied.get(target) != profile
        self.applied[target] = profile
        return nodeconfig_pb2.ApplyResponse(writes_performed=1 if changed else 0)

    def reset(self, target: str) -> nodeconfig_pb2.ResetResponse:
        self.calls.append(("reset", target))
        self.resets.append(target)
        self.applied.pop(target, None)
        return nodeconfig_pb2.ResetResponse()

    def set_telemetry(self, target: str, collectors: Any) -> nodeconfig_pb2.TelemetryConfig:
        self.calls.append(("set_telemetry", target))
        mine = self.telemetry.setdefault(target, {})
        for c in collectors:
            interval = c.interval_ms if c.HasField("interval_ms") else mine.get(c.name, (False, 0))[1]
            mine[c.name] = (c.enabled, interval)
        return nodeconfig_pb2.TelemetryConfig(collectors=list(collectors))

    def inventory(self, target: str) -> nodeconfig_pb2.Inventory:
        from controller.mechanisms.nodeagent import AgentError

        self.calls.append(("inventory", target))
        if target not in self.inventories:
            raise AgentError(f"node agent {target}: UNAVAILABLE", temporary=True)
        return self.inventories[target]


def documents(path: Path) -> list[dict[str, Any]]:
    return [_k8s(d.raw) for d in load_documents(path)]


def _k8s(raw: Any) -> dict[str, Any]:
    import copy

    doc = copy.deepcopy(dict(raw))
    doc["metadata"] = {**doc["metadata"], "namespace": NAMESPACE}
    return doc


def registry() -> PolicyRegistry:
    return PolicyRegistry({"staticPlacedComponents": StaticPlacedComponents,
                           "constraintAwarePlacer": ConstraintAwarePlacer})


class Running:
    """Controllers started by a test, all stopped at teardown even when the test fails."""

    def __init__(self, standin: StandIn) -> None:
        self.standin = standin
        self.started: list[tuple[Controller, threading.Event]] = []

    def start(self, gateway: Any = None, mechanism_registry: MechanismRegistry | None = None,
              **config: Any) -> Controller:
        defaults: dict[str, Any] = {"namespace": NAMESPACE, "mechanisms": ("kubernetes",), "watch_timeout": 1,
                                    "availability_timeout": 2.0, "backoff": Backoff(base=0.02, cap=0.2),
                                    "resync_period": 60.0, "workers": 1}
        controller = build(Config(**{**defaults, **config}), api_client_for_host(self.standin.host),
                           agents=gateway if gateway is not None else FakeAgents(), registry=registry(),
                           mechanisms=mechanism_registry)
        stop = threading.Event()
        controller.start(stop)
        self.started.append((controller, stop))
        return controller

    def stop(self, controller: Controller) -> None:
        for ctl, stop in self.started:
            if ctl is controller:
                stop.set()
                ctl.shutdown()

    def stop_all(self) -> None:
        for ctl, stop in self.started:
            stop.set()
            ctl.shutdown()
