"""Fixtures of the stand-in's own tests: a fresh stand-in and a real client pointed at it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from kube_standin import StandIn
from kubernetes import client


@pytest.fixture
def standin() -> Iterator[StandIn]:
    with StandIn() as server:
        yield server
    assert server.errors == [], f"the stand-in failed internally: {server.errors}"


@pytest.fixture
def api(standin: StandIn) -> Iterator[client.ApiClient]:
    config = client.Configuration()
    config.host = standin.host
    config.retries = False
    with client.ApiClient(config) as api_client:
        yield api_client
