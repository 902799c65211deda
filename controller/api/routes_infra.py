"""`/api/v1/nodes`, `/clusters`, `/devices`, `/policies`, `/ping`: the system as the controller sees it."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Body, Request
from pydantic import BaseModel, Field

from controller.api import apps, views
from controller.api.auth import ADMIN, OPERATOR, VIEWER, context
from controller.api.context import ApiContext
from controller.api.errors import ApiError
from controller.api.ports import DeviceGateway, PolicyControl
from controller.kube import resources
from controller.kube.errors import KubeError, NotFound

router = APIRouter(prefix="/api/v1")


def _one(ctx: ApiContext, res: resources.Resource, name: str) -> dict[str, Any]:
    try:
        return ctx.store.get(res, ctx.settings.namespace, name)
    except NotFound:
        raise ApiError(404, f"no {res.kind} {name!r} in namespace {ctx.settings.namespace}", "name") from None


# ---------------------------------------------------------------------------- nodes and clusters


@router.get(
    "/nodes", tags=["infrastructure"], dependencies=VIEWER, summary="Nodes: runtimes, devices, telemetry"
)
def list_nodes(request: Request) -> list[dict[str, Any]]:
    ctx = context(request)
    return [views.node_view(o) for o in ctx.store.list(resources.NODE, ctx.settings.namespace)[0]]


@router.get("/nodes/{name}", tags=["infrastructure"], dependencies=VIEWER, summary="One node")
def get_node(request: Request, name: str) -> dict[str, Any]:
    return views.node_view(_one(context(request), resources.NODE, name))


@router.get("/clusters", tags=["infrastructure"], dependencies=VIEWER, summary="Clusters and their nodes")
def list_clusters(request: Request) -> list[dict[str, Any]]:
    ctx = context(request)
    return [views.cluster_view(o) for o in ctx.store.list(resources.CLUSTER, ctx.settings.namespace)[0]]


@router.get("/clusters/{name}", tags=["infrastructure"], dependencies=VIEWER, summary="One cluster")
def get_cluster(request: Request, name: str) -> dict[str, Any]:
    return views.cluster_view(_one(context(request), resources.CLUSTER, name))


# ---------------------------------------------------------------------------- devices


def _devices(ctx: ApiContext) -> DeviceGateway:
    if ctx.devices is None:
        raise ApiError(503, "no far-edge bridge configured (start the API with --bridge-socket PATH)")
    return ctx.devices


class TwinSettings(BaseModel):
    settings: dict[str, Any] = Field(
        description="Desired twin settings, key → value (checked by the bridge)", min_length=1
    )


class TwinKeys(BaseModel):
    keys: list[str] = Field(description="Settings to unset (back to the device's default)", min_length=1)


@router.get("/devices", tags=["devices"], dependencies=VIEWER, summary="Far-edge devices behind the bridge")
def list_devices(request: Request) -> list[dict[str, Any]]:
    return _devices(context(request)).list_devices()


@router.get("/devices/{device}", tags=["devices"], dependencies=VIEWER, summary="A device and its twin")
def get_device(request: Request, device: str) -> dict[str, Any]:
    return _devices(context(request)).get_device(device)


@router.put("/devices/{device}/twin", tags=["devices"], dependencies=OPERATOR, summary="Set desired settings")
def set_twin(request: Request, device: str, body: TwinSettings) -> dict[str, Any]:
    return _devices(context(request)).set_twin(device, body.settings)


@router.post(
    "/devices/{device}/twin/unset", tags=["devices"], dependencies=OPERATOR, summary="Unset settings"
)
def unset_twin(request: Request, device: str, body: TwinKeys) -> dict[str, Any]:
    return _devices(context(request)).unset_twin(device, body.keys)


@router.get(
    "/devices/{device}/deployments",
    tags=["devices"],
    dependencies=VIEWER,
    summary="Components placed on this device and the state of their deployment",
)
def device_deployments(request: Request, device: str) -> list[dict[str, Any]]:
    """From the apps' statuses: which far-edge components the controller placed on the device,
    and whether they run (the far-edge code-deploy path is issue 10: until it lands they stay
    pending, and the status says so)."""
    out = []
    for obj in apps.listed(context(request)):
        for comp in views.component_views(obj):
            if comp["node"] == device:
                ready = next(c for c in comp["conditions"] if c["type"] == "Ready")
                out.append(
                    {
                        "app": obj["metadata"]["name"],
                        "component": comp["name"],
                        "state": "running" if ready["status"] == "True" else "pending",
                        "reason": ready["reason"],
                        "message": ready["message"],
                    }
                )
    return out


# ---------------------------------------------------------------------------- policies


def _policies(ctx: ApiContext) -> PolicyControl:
    if ctx.policies is None:
        raise ApiError(503, "policies are not managed by this API (the controller runs elsewhere)")
    return ctx.policies


class PolicyState(BaseModel):
    enabled: bool


class ModeState(BaseModel):
    mode: str = Field(description="heuristic or ml")


@router.get(
    "/policies", tags=["policies"], dependencies=VIEWER, summary="The placement policies and the mode"
)
def list_policies(request: Request) -> dict[str, Any]:
    control = _policies(context(request))
    return {"mode": control.mode(), "policies": [asdict(p) for p in control.policies()]}


@router.get("/policies/mode", tags=["policies"], dependencies=VIEWER, summary="heuristic or ml")
def get_mode(request: Request) -> dict[str, str]:
    return {"mode": _policies(context(request)).mode()}


@router.put("/policies/mode", tags=["policies"], dependencies=ADMIN, summary="Switch heuristic/ML policies")
def set_mode(request: Request, body: ModeState) -> dict[str, str]:
    return {"mode": _policies(context(request)).set_mode(body.mode)}


@router.put("/policies/{name}", tags=["policies"], dependencies=ADMIN, summary="Enable or disable a policy")
def set_policy(request: Request, name: str, body: Annotated[PolicyState, Body()]) -> dict[str, Any]:
    return asdict(_policies(context(request)).set_enabled(name, body.enabled))


# ---------------------------------------------------------------------------- health


def ping(ctx: ApiContext) -> dict[str, Any]:
    """The store answers, and the in-process controller (when there is one) runs."""
    try:
        ctx.store.list(resources.APP, ctx.settings.namespace)
    except KubeError as exc:
        raise ApiError(503, f"object store unreachable: {exc.message}") from None
    state = ctx.controller_state() if ctx.controller_state is not None else "external"
    if state == "stopped":
        raise ApiError(503, "the controller is not running")
    return {"store": "ok", "controller": state}  # standby: a leader-election candidate


@router.get(
    "/ping", tags=["health"], dependencies=VIEWER, summary="The object store and the controller answer"
)
def get_ping(request: Request) -> dict[str, Any]:
    return ping(context(request))
