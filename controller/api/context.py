"""What one REST API instance works with, handed to the app factory (no globals).

The daemon's composition root (controller.api.server) builds an ApiContext from its config;
tests build one over the stand-in Kubernetes API or the embedded store, with their own ports.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.api.ports import DeviceGateway, NodeStates, PerformanceSource, PolicyControl
from controller.api.tokens import TokenStore
from controller.kube.objectapi import ObjectApi
from controller.reconcile.metrics import ControllerMetrics
from mlconnector.contracts import ModelRegistry

API_FIELD_MANAGER = "mlsysops-api"
DEFAULT_MAX_BODY = 1 << 20  # 1 MiB: the largest description we have seen is ~40 KiB


@dataclass(frozen=True)
class ApiSettings:
    namespace: str = "default"
    max_body_bytes: int = DEFAULT_MAX_BODY
    # The role granted to clients without a token on 127.0.0.1/::1 (the reference's clients send
    # no credentials). None, the default: every request needs a token.
    anonymous_loopback_role: str | None = None
    # The store is the embedded one: workloads are the local mechanism's (named per replica),
    # not Kubernetes Deployments (what the reference's details route names).
    local_workloads: bool = False
    watch_timeout: int = 10  # seconds of one store watch behind the event stream (it re-watches)
    # Where POST /api/v1/models/{name}/train may read datasets from (None: only the recorded one).
    model_datasets: Path | None = None
    # What a deployed model server (/ml/deploy_ml) is given as --registry: the registry's URI as
    # the server's node reaches it (an embedded registry is only reachable on this host).
    model_registry_uri: str = ""
    model_server_image: str = "mlsysops.example/mlsysops-modelserver:0.1.0"  # deploy/images builds it


@dataclass(frozen=True)
class ApiContext:
    store: ObjectApi
    tokens: TokenStore
    settings: ApiSettings = ApiSettings()
    performance: PerformanceSource | None = None
    devices: DeviceGateway | None = None
    policies: PolicyControl | None = None
    # Whether the in-process controller is running (None: it runs elsewhere, not known here).
    controller_state: Callable[[], str] | None = None  # running, standby or stopped
    # The in-process controller's metrics, served at /metrics (None: it runs elsewhere).
    metrics: ControllerMetrics | None = None
    # The node agents' own state (the console shows drift); None: the API reaches no agent.
    node_states: NodeStates | None = None
    # The model registry (mlconnector, the ml extra); None: the /api/v1/models routes answer 503.
    models: ModelRegistry | None = None
