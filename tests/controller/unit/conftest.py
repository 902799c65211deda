"""Builders shared by the controller's pure unit tests (descriptions, inventories)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from controller.inventory import Inventory
from controller.model import App, parse_document
from mlsysops.nodeconfig.v1 import nodeconfig_pb2, nodeconfig_pb2_grpc

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def fixtures_dir() -> Path:
    return REPO / "tests" / "controller" / "fixtures"


@pytest.fixture
def examples_dir() -> Path:
    return REPO / "deploy" / "examples"


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Any:
    """The `mlsysops` CLI root, invoked in process without a cluster (no KUBECONFIG)."""
    from click.testing import CliRunner, Result

    from mlsysops.cli import main

    monkeypatch.delenv("KUBECONFIG", raising=False)

    def invoke(*args: str | Path) -> Result:
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def node_doc() -> Callable[..., dict[str, Any]]:
    """An MLSysOpsNode (Kubernetes form) with sensible defaults; keyword overrides are top-level fields."""

    def make(
        name: str, layer: str = "edge", cores: int = 4, memory_gb: int = 8, arch: str = "amd64", **fields: Any
    ) -> dict[str, Any]:
        return {
            "apiVersion": "mlsysops.eu/v1",
            "kind": "MLSysOpsNode",
            "metadata": {"name": name},
            "continuum_layer": layer,
            "environment": {"container_runtime": ["containerd"]},
            "hardware": {"cpu": {"architecture": arch, "cores": cores}, "memory": memory_gb},
            **fields,
        }

    return make


@pytest.fixture
def inventory_of() -> Callable[..., Inventory]:
    def make(*docs: dict[str, Any]) -> Inventory:
        return Inventory.from_descriptions(parse_document(d) for d in docs)

    return make


@pytest.fixture
def app_of() -> Callable[..., App]:
    """An App from component dicts; a component without containers gets one small container."""

    def make(*components: dict[str, Any], name: str = "app", **fields: Any) -> App:
        comps = [
            {
                "containers": [
                    {
                        "image": "img",
                        "platform_requirements": {
                            "cpu": {"requests": "500m"},
                            "memory": {"requests": "512Mi"},
                        },
                    }
                ],
                **c,
            }
            for c in components
        ]
        app = parse_document({"MLSysOpsApp": {"name": name, "components": comps, **fields}})
        assert isinstance(app, App)
        return app

    return make


def comp(name: str, **fields: Any) -> dict[str, Any]:
    return {"metadata": {"name": name}, **fields}


@pytest.fixture
def component() -> Callable[..., dict[str, Any]]:
    return comp


@pytest.fixture
def agent_server() -> Iterator[str]:
    """A real gRPC server speaking the node API (GetInventory only) on a free loopback port."""

    class Servicer(nodeconfig_pb2_grpc.NodeConfigServicer):
        def GetInventory(self, request: Any, context: Any) -> nodeconfig_pb2.Inventory:
            return nodeconfig_pb2.Inventory(
                node_name="grpc-node",
                agent_version="0.1.0",
                architecture="x86_64",
                memory_bytes=2 * 2**30,
                cpus=[nodeconfig_pb2.Cpu(id=0)],
                runtimes=[nodeconfig_pb2.Runtime(handler="crun", available=True)],
            )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    nodeconfig_pb2_grpc.add_NodeConfigServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)
