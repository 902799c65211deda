"""`/api/v1/models`: the model registry (list, show, train, promote, rollback, explain).

Thin handlers over controller.api.models; reads need a viewer, writes an operator (training,
promote and rollback change what the learning policy decides with), explain is a read.
`GET /api/v1/models/-/retrain` lists what the retraining loop did (when the daemon runs one).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Request

from controller.api import models
from controller.api.auth import OPERATOR, VIEWER, context
from controller.api.errors import ApiError
from mlconnector.contracts import CHAMPION, ModelRegistry

router = APIRouter(prefix="/api/v1/models", tags=["models"])


def _config(request: Request) -> models.ModelsConfig:
    found = getattr(request.app.state, "ml", None)
    return found if isinstance(found, models.ModelsConfig) else models.ModelsConfig()


def _registry(request: Request) -> ModelRegistry:
    registry = context(request).models
    if registry is None:
        raise models.unavailable()
    return registry


@router.get("", dependencies=VIEWER, summary="Models with their champion and versions")
def list_models(request: Request) -> list[dict[str, Any]]:
    return models.listed(_registry(request))


@router.get("/-/retrain", dependencies=VIEWER, summary="What the retraining loop checked and did")
def retrain_records(request: Request, model: str | None = None) -> dict[str, Any]:
    """Each check of each model, oldest first: promoted, challenger, skipped or failed, and why."""
    retrainer = _config(request).retrainer
    if retrainer is None:
        return {"running": False, "records": []}
    return {"running": True, "records": [r.to_json() for r in retrainer.records(model)]}


@router.get("/{name}", dependencies=VIEWER, summary="Versions, aliases, metrics, signature, lineage")
def show_model(request: Request, name: str) -> dict[str, Any]:
    return models.show(_registry(request), name)


@router.post("/{name}/train", dependencies=OPERATOR, summary="Retrain (promoted only if better)")
def train_model(
    request: Request,
    name: str,
    body: Annotated[
        dict[str, Any] | None,
        Body(
            description='{"dataset": PATH (under the API\'s --model-datasets; default: the recorded '
            'dataset), "reason": "...", "holdout_fraction": 0.25, or instead of dataset "prometheus": '
            '{"url": the API\'s Prometheus (default), "window": "1h", "row_window": "30s", "step": "5s", '
            '"queries": {column: PromQL}, "constants": {column: number}}}'
        ),
    ] = None,
) -> dict[str, Any]:
    """The new version is trained on the older windows and judged with the champion on the most
    recent ones (time-ordered hold-out): promoted when its MAPE is lower, else alias challenger."""
    ctx = context(request)
    path = models.dataset_path(models.body_field(body, "dataset", str), ctx.settings.model_datasets)
    given = (body or {}).get("prometheus")
    spec = None if given is None else models.prometheus_spec(given, _config(request).prometheus_urls)
    return models.train(
        _registry(request),
        name,
        dataset=path,
        reason=models.body_field(body, "reason", str, "operator (API)"),
        holdout_fraction=float(models.body_field(body, "holdout_fraction", (int, float), 0.25)),
        prometheus=spec,
    )


@router.post("/{name}/promote", dependencies=OPERATOR, summary="Make a version the champion")
def promote_model(
    request: Request,
    name: str,
    body: Annotated[dict[str, Any], Body(description='{"version": "3"}')],
) -> dict[str, Any]:
    version = models.body_field(body, "version", (str, int))
    if version is None:
        raise ApiError(422, 'expected {"version": "N"}', "version")
    return models.promote(_registry(request), name, str(version))


@router.post("/{name}/rollback", dependencies=OPERATOR, summary="The previous champion back")
def rollback_model(request: Request, name: str) -> dict[str, Any]:
    return models.rollback(_registry(request), name)


@router.post("/{name}/explain", dependencies=VIEWER, summary="A prediction and its feature attributions")
def explain_model(
    request: Request,
    name: str,
    body: Annotated[
        dict[str, Any],
        Body(description='{"row": {feature: value, ...}, "version": "champion" (an alias or a version)}'),
    ],
) -> dict[str, Any]:
    ref = str(models.body_field(body, "version", (str, int), CHAMPION))
    return models.explain(_registry(request), name, body.get("row"), ref)
