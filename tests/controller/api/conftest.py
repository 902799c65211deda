"""Fixtures of the REST API tests: the stand-in Kubernetes API (driven by the real kubernetes
client through KubeApi), a token file, and API clients with a token of each role."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry

from faredge.bridge.router import Router
from faredge.control import ControlServer
from faredge.metrics import BridgeMetrics
from faredge.protocol.inbound import Inbound
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Registry

sys.path.insert(0, str(Path(__file__).resolve().parent))

from api_harness import STANDIN

sys.path.insert(0, str(STANDIN))

from kube_standin import StandIn
from kube_validators import RecordingValidator

from controller.api.app import create_app
from controller.api.context import ApiContext, ApiSettings
from controller.api.tokens import TokenStore
from controller.kube.api import KubeApi
from controller.kube.client import api_client_for_host


@pytest.fixture
def standin() -> Iterator[StandIn]:
    validator = RecordingValidator()
    with StandIn(validator=validator) as server:
        yield server
    assert validator.rejected == [], f"invalid objects were written: {validator.rejected}"
    assert server.errors == [], f"the stand-in failed internally: {server.errors}"


@pytest.fixture
def store(standin: StandIn) -> KubeApi:
    return KubeApi(api_client_for_host(standin.host))


@pytest.fixture
def tokens(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "tokens.json")


@pytest.fixture
def bearer(tokens: TokenStore) -> dict[str, dict[str, str]]:
    """Authorization headers, one per role."""
    return {
        role: {"Authorization": f"Bearer {tokens.create(role, name=role)[0]}"}
        for role in ("viewer", "operator", "admin")
    }


@pytest.fixture
def make_client(store: KubeApi, tokens: TokenStore) -> Iterator[Callable[..., TestClient]]:
    clients: list[TestClient] = []

    def make(settings: ApiSettings | None = None, **ports: Any) -> TestClient:
        ctx = ApiContext(store, tokens, settings or ApiSettings(), **ports)
        client = TestClient(create_app(ctx))
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


# ---------------------------------------------------------------------------- a real bridge's control socket


class Downlink:
    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    def send_desired(self, device, payload: bytes) -> None:
        self.sent.append((device.id, json.loads(payload)))


class Inventory:
    def changed(self) -> None:
        pass


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[tuple[Path, Downlink]]:
    downlink = Downlink()
    router = Router(
        Registry(tmp_path / "registry.json"),
        BridgeMetrics(CollectorRegistry(), max_devices=10),
        RateLimitedLog(logging.getLogger("tests.api"), 60),
        downlinks={"mqtt": downlink},
        inventory=Inventory(),
    )
    router.handle(Inbound("mqtt", "sensor-7", "birth", b'{"id":"sensor-7","boot":1}'))
    path = Path("/tmp") / f"api-fe-{uuid.uuid4().hex[:8]}.sock"
    server = ControlServer(path, router)
    server.start()
    yield path, downlink
    server.stop()
