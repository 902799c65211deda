"""The reference framework's route table, answering with the shapes its clients read.

The reference's CLI and scripts call these paths (see docs/api.md for the table). They run on
the same store, validation and roles as /api/v1; only the answers are shaped as the reference
clients expect. What differs on purpose: the status is what the controller reports (an app
is "Submitted" until the controller has looked at it, "Deployed" only when it runs), a bad
description is refused with 422 naming the field, and the ML-model routes answer 501 until
there is a model deployment path (the ML connector, issue 14) instead of queueing into nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, Body, Path, Query, Request

from controller.api import apps, views
from controller.api.auth import ADMIN, OPERATOR, VIEWER, context
from controller.api.errors import ApiError
from controller.api.routes_infra import _policies, ping
from controller.kube import resources

router = APIRouter(tags=["reference"])

MODE_BY_NUMBER = {0: "heuristic", 1: "ml"}
ML_MISSING = (
    "ML model deployment is not implemented yet: it needs the ML connector (issue 14); nothing was queued"
)
ML_RESPONSES: dict[int | str, dict[str, Any]] = {501: {"description": ML_MISSING}}


@router.post("/apps/deploy", dependencies=OPERATOR, summary="Deploy an app (reference body)")
def deploy(
    request: Request,
    doc: Annotated[dict[str, Any], Body(description='{"MLSysOpsApp": {...}}, as the reference CLI sends it')],
) -> dict[str, Any]:
    stored = apps.submit(context(request), doc, create=True)
    return {"app_id": stored["metadata"]["name"], "status": views.phase(stored)}


@router.get("/apps/list_all/", dependencies=VIEWER, summary="Every app's status")
def list_all(request: Request) -> dict[str, Any]:
    return {"System_status": {o["metadata"]["name"]: views.phase(o) for o in apps.listed(context(request))}}


@router.get("/apps/status/{app_id}", dependencies=VIEWER, summary="One app's status")
def status(request: Request, app_id: str) -> dict[str, Any]:
    return {"app_id": app_id, "status": views.phase(apps.get(context(request), app_id))}


@router.get("/apps/apps/details/{app_id}", dependencies=VIEWER, summary="Components and where they run")
def details(request: Request, app_id: str) -> dict[str, Any]:
    ctx = context(request)
    return views.reference_details(apps.get(ctx, app_id), ctx.settings.local_workloads)


@router.get("/apps/performance/{app_id}", dependencies=VIEWER, summary="[[metric, {value}], ...]")
def performance(request: Request, app_id: str) -> list[list[Any]]:
    return views.reference_performance(apps.performance(context(request), app_id))


@router.delete("/apps/remove/{app_id}", dependencies=OPERATOR, summary="Remove an app")
def remove(request: Request, app_id: str) -> dict[str, Any]:
    apps.delete(context(request), app_id)
    return {"app_id": app_id, "message": "Application removed: the controller is taking it down."}


@router.get("/infra/list/", dependencies=VIEWER, summary="Clusters and nodes")
def list_infra(
    request: Request,
    type: Annotated[str, Query(description="Continuum, Cluster, Datacenter, Node or All")] = "All",
    name: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    kinds = {
        "continuum": (),
        "datacenter": (),
        "cluster": ("clusters",),
        "node": ("nodes",),
        "all": ("clusters", "nodes"),
    }
    wanted = kinds.get(type.lower())
    if wanted is None:
        raise ApiError(
            422, f"type {type!r}: expected one of Continuum, Cluster, Datacenter, Node, All", "type"
        )
    ctx = context(request)
    out: dict[str, Any] = {}
    for key, res, view in (
        ("clusters", resources.CLUSTER, views.cluster_view),
        ("nodes", resources.NODE, views.node_view),
    ):
        if key in wanted:
            found = [view(o) for o in ctx.store.list(res, ctx.settings.namespace)[0]]
            out[key] = [v for v in found if name is None or v["name"] == name]
    return out


def _ml_missing() -> NoReturn:
    raise ApiError(501, ML_MISSING)


@router.post(
    "/ml/deploy_ml",
    dependencies=OPERATOR,
    response_model=None,
    responses=ML_RESPONSES,
    summary="Not implemented (issue 14)",
)
def deploy_ml() -> None:
    _ml_missing()


@router.get(
    "/ml/list_all/",
    dependencies=VIEWER,
    response_model=None,
    responses=ML_RESPONSES,
    summary="Not implemented (issue 14)",
)
def list_ml() -> None:
    _ml_missing()


@router.get(
    "/ml/status/{model_uid}",
    dependencies=VIEWER,
    response_model=None,
    responses=ML_RESPONSES,
    summary="Not implemented (issue 14)",
)
def ml_status(model_uid: str) -> None:
    _ml_missing()


@router.delete(
    "/ml/remove/{model_uid}",
    dependencies=OPERATOR,
    response_model=None,
    responses=ML_RESPONSES,
    summary="Not implemented (issue 14)",
)
def remove_ml(model_uid: str) -> None:
    _ml_missing()


@router.get("/manage/ping", dependencies=VIEWER, summary="Is the controller alive")
def manage_ping(request: Request) -> dict[str, Any]:
    return {"status": "success", "message": "Agent Alive", "response": ping(context(request))}


@router.put("/manage/mode/{mode}", dependencies=ADMIN, summary="0: heuristic policies, 1: ML policies")
def manage_mode(request: Request, mode: Annotated[int, Path(description="0 or 1")]) -> dict[str, Any]:
    if mode not in MODE_BY_NUMBER:
        raise ApiError(400, "Mode must be 0 or 1", "mode")
    named = _policies(context(request)).set_mode(MODE_BY_NUMBER[mode])
    return {"status": "success", "message": f"Mode {mode} ({named}) set"}
