"""The app operations both route tables share: validate and write, read, delete.

Writes go to the object store only, and only after the whole description validated (the
controller's own model: CRD schema plus semantic rules), so a bad document writes nothing and
the answer names the field. The API is one more field manager (`mlsysops-api`) on the object:
it never writes `status`, which is the controller's.
"""

from __future__ import annotations

import copy
from typing import Any

from controller.api.context import API_FIELD_MANAGER, ApiContext
from controller.api.errors import ApiError
from controller.kube import resources
from controller.kube.errors import NotFound
from controller.model import App, DescriptionError, parse_document, to_kubernetes_form

Obj = dict[str, Any]
_SERVER_SET = ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields")


def validated(ctx: ApiContext, doc: Any) -> Obj:
    """The MLSysOpsApp in Kubernetes form, ready to apply; DescriptionError/ApiError otherwise."""
    namespace = ctx.settings.namespace
    kind, _ = to_kubernetes_form(doc, namespace)  # the kind first: a node description is not an app
    if kind != "MLSysOpsApp":
        raise ApiError(422, f"expected an MLSysOpsApp description (got {kind})", "kind")
    desc = parse_document(doc, namespace)
    assert isinstance(desc, App)
    if desc.namespace != namespace:
        raise DescriptionError.single(
            "MLSysOpsApp.metadata.namespace",
            f"the API's namespace ({namespace}) or no namespace",
            repr(desc.namespace),
        )
    body = copy.deepcopy(dict(desc.raw))
    body.pop("status", None)
    meta = body["metadata"]
    for key in _SERVER_SET:
        meta.pop(key, None)
    return body


def exists(ctx: ApiContext, name: str) -> bool:
    try:
        ctx.store.get(resources.APP, ctx.settings.namespace, name)
    except NotFound:
        return False
    return True


def submit(ctx: ApiContext, doc: Any, *, create: bool, name: str | None = None) -> Obj:
    """Validate, then write. `create`: refuse (409) an app that exists; `name`: the one the URL
    names, which the document must carry."""
    body = validated(ctx, doc)
    given = body["metadata"]["name"]
    if name is not None and given != name:
        raise ApiError(
            422, f"metadata.name {given!r} differs from the name in the URL ({name!r})", "metadata.name"
        )
    if create and exists(ctx, given):
        raise ApiError(
            409, f"app {given!r} already exists (PUT /api/v1/apps/{given} updates it)", "metadata.name"
        )
    return ctx.store.apply(body, field_manager=API_FIELD_MANAGER, force=True)


def get(ctx: ApiContext, name: str) -> Obj:
    try:
        return ctx.store.get(resources.APP, ctx.settings.namespace, name)
    except NotFound:
        raise ApiError(404, f"no app {name!r} in namespace {ctx.settings.namespace}", "name") from None


def listed(ctx: ApiContext) -> list[Obj]:
    return ctx.store.list(resources.APP, ctx.settings.namespace)[0]


def delete(ctx: ApiContext, name: str) -> None:
    """Delete the app; what the controller made for it goes with it (owner references, and the
    controller's own removal of node settings and local workloads)."""
    if not ctx.store.delete(resources.APP, ctx.settings.namespace, name):
        raise ApiError(404, f"no app {name!r} in namespace {ctx.settings.namespace}", "name")


def performance(ctx: ApiContext, name: str) -> dict[str, Any]:
    get(ctx, name)  # 404 for an unknown app, whatever the metrics backend says
    if ctx.performance is None:
        raise ApiError(503, "no performance source configured (start the API with --prometheus URL)")
    return ctx.performance.app_performance(ctx.settings.namespace, name)
