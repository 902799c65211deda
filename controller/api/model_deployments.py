"""A registered model deployed as an inference service: the MLSysOpsApp the reference's
`/ml/deploy_ml` creates, and how such apps are told apart from others.

The app has one component, `model-server`, whose container runs the generic model server of the
ML connector (`python -m mlconnector.serve --registry URI --model NAME --alias ALIAS ...`, in the
image the API is configured with) and exposes its port. Nothing else is special: it is validated,
stored and placed by the controller like any app, and deleting it takes the server down. The app
carries the label `mlsysops.eu/model: NAME` (and `mlsysops.eu/model-alias`), which is how the
/ml/ routes find model deployments among apps.

The server's `--registry` is the API's registry URI: an embedded registry (a directory) is only
reachable on the API's host, so a fleet shares a PostgreSQL/S3 (or MLflow server) registry.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from controller.api.apps import listed as listed_apps
from controller.api.context import ApiContext
from controller.api.errors import ApiError
from controller.kube import resources
from controller.kube.errors import NotFound
from mlconnector.contracts import CHAMPION, RegistryError

Obj = dict[str, Any]
MODEL_LABEL = "mlsysops.eu/model"
ALIAS_LABEL = "mlsysops.eu/model-alias"
COMPONENT = "model-server"
DEFAULT_PORT = 8080
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_KNOWN = frozenset({"model", "alias", "name", "node_placement", "port"})


def app_name(model: str) -> str:
    """A DNS-1123 name for the model's app: `model-latency-p95-ms` for latency_p95_ms."""
    return "model-" + re.sub(r"[^a-z0-9-]+", "-", model.lower()).strip("-")


def server_command(registry_uri: str, model: str, alias: str, port: int) -> list[str]:
    return [
        "python", "-m", "mlconnector.serve",
        "--registry", registry_uri,
        "--model", model,
        "--alias", alias,
        "--host", "0.0.0.0",  # the component's own network namespace: reachable through its port
        "--port", str(port),
    ]


def _field(body: Mapping[str, Any], key: str, kind: type, default: Any) -> Any:
    value = body.get(key, default)
    if value is None or isinstance(value, bool) or not isinstance(value, kind):
        raise ApiError(422, f"{key}: expected {kind.__name__}", key)
    return value


def app_for(ctx: ApiContext, body: Any) -> Obj:
    """The MLSysOpsApp (Kubernetes form) serving `body["model"]`; ApiError naming a bad field."""
    if not isinstance(body, Mapping):
        raise ApiError(422, 'expected {"model": NAME, ...}', "model")
    unknown = sorted(set(body) - _KNOWN)
    if unknown:
        expected = ", ".join(sorted(_KNOWN))
        raise ApiError(422, f"unknown field(s) {', '.join(unknown)} (expected {expected})", unknown[0])
    model = _field(body, "model", str, None)
    if not _MODEL_NAME.fullmatch(model):
        raise ApiError(422, f"model {model!r}: not a model name", "model")
    alias = _field(body, "alias", str, CHAMPION)
    if not _MODEL_NAME.fullmatch(alias):
        raise ApiError(422, f"alias {alias!r}: not an alias or version", "alias")
    port = _field(body, "port", int, DEFAULT_PORT)
    if not 1 <= port <= 65535:
        raise ApiError(422, f"port {port}: expected 1-65535", "port")
    try:
        known = ctx.models.models() if ctx.models is not None else [model]
    except RegistryError as exc:
        raise ApiError(503, f"model registry: {exc}") from None
    if model not in known:
        raise ApiError(404, f"no model {model!r} in the registry (train one first)", "model")
    if not ctx.settings.model_registry_uri:
        raise ApiError(503, "the API has no model registry URI to give the model server", "model")
    component: Obj = {
        "metadata": {"name": COMPONENT},
        "restart_policy": "Always",
        "containers": [
            {
                "image": ctx.settings.model_server_image,
                "command": server_command(ctx.settings.model_registry_uri, model, alias, port),
                "ports": [{"container_port": port, "protocol": "TCP", "name": "http"}],
            }
        ],
    }
    if "node_placement" in body:
        component["node_placement"] = _field(body, "node_placement", dict, None)
    name = _field(body, "name", str, app_name(model))
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {
            "name": name,
            "namespace": ctx.settings.namespace,
            "labels": {MODEL_LABEL: model, ALIAS_LABEL: alias},
        },
        "name": name,
        "components": [component],
    }


def model_of(obj: Mapping[str, Any]) -> str | None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    model = labels.get(MODEL_LABEL)
    return str(model) if model is not None else None


def listed(ctx: ApiContext) -> list[Obj]:
    return [o for o in listed_apps(ctx) if model_of(o) is not None]


def get(ctx: ApiContext, name: str) -> Obj:
    try:
        obj = ctx.store.get(resources.APP, ctx.settings.namespace, name)
    except NotFound:
        obj = None
    if obj is None or model_of(obj) is None:
        raise ApiError(
            404, f"no model deployment {name!r} in namespace {ctx.settings.namespace}", "model_uid"
        )
    return obj
