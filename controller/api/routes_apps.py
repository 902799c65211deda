"""`/api/v1/apps`: submit, list, read, status, explain, performance, delete."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request, Response

from controller.api import apps, views
from controller.api.auth import OPERATOR, VIEWER, context
from controller.api.errors import ApiError

router = APIRouter(prefix="/api/v1/apps", tags=["apps"])

Description = Annotated[
    dict[str, Any],
    Body(
        description="An MLSysOpsApp, in Kubernetes form (apiVersion/kind/metadata) or the reference's "
        'wrapper form ({"MLSysOpsApp": {...}}).'
    ),
]


@router.get("", dependencies=VIEWER, summary="List apps with their phase")
def list_apps(
    request: Request,
    full: Annotated[bool, Query(description="Whole objects (description, status), not summaries")] = False,
) -> list[dict[str, Any]]:
    found = apps.listed(context(request))
    return [views.clean(o) for o in found] if full else [views.app_summary(o) for o in found]


@router.post("", dependencies=OPERATOR, status_code=201, summary="Submit a new app")
def submit_app(request: Request, response: Response, doc: Description) -> dict[str, Any]:
    """Validated whole, then written to the object store; the controller reconciles it. The
    answer's phase is "Submitted": read the status to see it run."""
    stored = apps.submit(context(request), doc, create=True)
    response.headers["Location"] = f"/api/v1/apps/{stored['metadata']['name']}"
    return views.app_summary(stored)


@router.put("/{name}", dependencies=OPERATOR, summary="Create or update an app")
def replace_app(request: Request, name: str, doc: Description) -> dict[str, Any]:
    return views.app_summary(apps.submit(context(request), doc, create=False, name=name))


@router.get("/{name}", dependencies=VIEWER, summary="The stored app object")
def get_app(request: Request, name: str) -> dict[str, Any]:
    return views.clean(apps.get(context(request), name))


@router.get("/{name}/status", dependencies=VIEWER, summary="Phase, conditions, per-component conditions")
def app_status(request: Request, name: str) -> dict[str, Any]:
    return views.app_status(apps.get(context(request), name))


@router.get("/{name}/explain", dependencies=VIEWER, summary="Why each component was placed where it is")
def explain_app(
    request: Request,
    name: str,
    component: Annotated[list[str] | None, Query(description="Only these components")] = None,
) -> list[Any]:
    obj = apps.get(context(request), name)
    unknown = sorted(set(component or ()) - set(views.component_names(obj)))
    if unknown:
        raise ApiError(404, f"no component {', '.join(unknown)} in app {name}", "component")
    rows = views.explanation(obj, component or ())
    return rows


@router.get("/{name}/performance", dependencies=VIEWER, summary="Live metrics per app and component")
def app_performance(request: Request, name: str) -> dict[str, Any]:
    return apps.performance(context(request), name)


@router.delete("/{name}", dependencies=OPERATOR, summary="Delete an app and everything made for it")
def delete_app(request: Request, name: str) -> dict[str, Any]:
    apps.delete(context(request), name)
    return {"name": name, "deleted": True}
