"""The reference framework's route table, answering with the shapes its clients read.

The reference's CLI and scripts call these paths (see docs/api.md for the table). They run on
the same store, validation and roles as /api/v1; only the answers are shaped as the reference
clients expect. What differs on purpose: the status is what the controller reports (an app
is "Submitted" until the controller has looked at it, "Deployed" only when it runs), a bad
description is refused with 422 naming the field, and the ML-model routes deploy a registered
model as an app whose one component is the generic model server (controller.api.model_deployments),
which the controller places like any other app, instead of queueing into a side store.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query, Request

from controller.api import apps, model_deployments, views
from controller.api.auth import ADMIN, OPERATOR, VIEWER, context
from controller.api.errors import ApiError
from controller.api.routes_infra import _policies, ping
from controller.kube import resources

router = APIRouter(tags=["reference"])

MODE_BY_NUMBER = {0: "heuristic", 1: "ml"}


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


@router.post("/ml/deploy_ml", dependencies=OPERATOR, summary="Deploy a registered model as an app")
def deploy_ml(
    request: Request,
    body: Annotated[
        dict[str, Any],
        Body(
            description='{"model": NAME, "alias": "champion", "name": APP, "node_placement": {...}, '
            '"port": 8080}: an app whose one component runs the model server (mlconnector.serve)'
        ),
    ],
) -> dict[str, Any]:
    """The model becomes an MLSysOpsApp (one component, the generic model server following the
    alias) that the controller places like any other app."""
    ctx = context(request)
    doc = model_deployments.app_for(ctx, body)
    stored = apps.submit(ctx, doc, create=True)
    name = stored["metadata"]["name"]
    return {"status": "success", "model_uid": name, "app_id": name, "phase": views.phase(stored),
            "message": f"model {body['model']} deployed as app {name}: the controller places it"}


@router.get("/ml/list_all/", dependencies=VIEWER, summary="Every model deployment's status")
def list_ml(request: Request) -> dict[str, Any]:
    ctx = context(request)
    return {"System_status": {
        o["metadata"]["name"]: {"model": model_deployments.model_of(o), "status": views.phase(o)}
        for o in model_deployments.listed(ctx)
    }}


@router.get("/ml/status/{model_uid}", dependencies=VIEWER, summary="One model deployment's status")
def ml_status(request: Request, model_uid: str) -> dict[str, Any]:
    obj = model_deployments.get(context(request), model_uid)
    return {"model_uid": model_uid, "model": model_deployments.model_of(obj), "status": views.phase(obj)}


@router.delete("/ml/remove/{model_uid}", dependencies=OPERATOR, summary="Remove a model deployment")
def remove_ml(request: Request, model_uid: str) -> dict[str, Any]:
    ctx = context(request)
    model_deployments.get(ctx, model_uid)  # 404 for an app that is not a model deployment
    apps.delete(ctx, model_uid)
    return {"model_uid": model_uid, "message": "Model deployment removed: the controller takes it down."}


@router.get("/manage/ping", dependencies=VIEWER, summary="Is the controller alive")
def manage_ping(request: Request) -> dict[str, Any]:
    return {"status": "success", "message": "Agent Alive", "response": ping(context(request))}


@router.put("/manage/mode/{mode}", dependencies=ADMIN, summary="0: heuristic policies, 1: ML policies")
def manage_mode(request: Request, mode: Annotated[int, Path(description="0 or 1")]) -> dict[str, Any]:
    if mode not in MODE_BY_NUMBER:
        raise ApiError(400, "Mode must be 0 or 1", "mode")
    named = _policies(context(request)).set_mode(MODE_BY_NUMBER[mode])
    return {"status": "success", "message": f"Mode {mode} ({named}) set"}
