"""Fixtures of the controller integration tests: a validating stand-in API server, the
controller wired against it by its real composition root, and the shared fixture documents."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ctlkube_harness import FIXTURES, Running, StandIn, documents
from kube_validators import RecordingValidator

from controller.kube.api import KubeApi
from controller.kube.client import api_client_for_host


@pytest.fixture
def validator() -> RecordingValidator:
    return RecordingValidator()


@pytest.fixture
def standin(validator: RecordingValidator) -> Iterator[StandIn]:
    with StandIn(validator=validator) as server:
        yield server
    assert validator.rejected == [], f"the controller wrote invalid objects: {validator.rejected}"
    assert server.errors == [], f"the stand-in failed internally: {server.errors}"


@pytest.fixture
def kube(standin: StandIn) -> KubeApi:
    return KubeApi(api_client_for_host(standin.host))


@pytest.fixture
def world(kube: KubeApi) -> list[dict[str, Any]]:
    """The fixture inventory (nodes and cluster) on the API server."""
    docs = documents(FIXTURES / "inventory")
    for doc in docs:
        kube.apply(doc, field_manager="test-admin")
    return docs


@pytest.fixture
def app_doc() -> dict[str, Any]:
    return documents(FIXTURES / "app.yaml")[0]


@pytest.fixture
def controllers(standin: StandIn) -> Iterator[Running]:
    running = Running(standin)
    try:
        yield running
    finally:
        running.stop_all()
