"""The app factory: an ApiContext in, a FastAPI application out (nothing bound or started).

    app = create_app(ApiContext(store, TokenStore(path)))
    uvicorn.run(app, ...)          # or controller.api.server, which also checks TLS

Middleware order: the body-size limit wraps everything, so an oversized request is refused
before any parsing. The OpenAPI document (`/openapi.json`, committed as docs/openapi.json)
comes from these routes; the web console (controller.api.console) is left out of it.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from controller.api import (
    console,
    errors,
    routes_apps,
    routes_events,
    routes_infra,
    routes_metrics,
    routes_models,
    routes_reference,
)
from controller.api.context import ApiContext
from controller.api.limits import BodyLimit

TITLE = "MLSysOps northbound API"
VERSION = "1.0.0"
DESCRIPTION = (
    "Submit MLSysOps applications, watch the controller place and run them, read their status and "
    "performance; inventory, far-edge devices, policies and the model registry. Our versioned API "
    "lives under /api/v1; "
    "the reference framework's routes are served beside it for its clients. Every route needs a "
    "bearer token (see docs/api.md)."
)


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(title=TITLE, version=VERSION, description=DESCRIPTION)
    app.state.context = ctx
    errors.install(app)
    for module in (routes_apps, routes_infra, routes_events, routes_models, routes_reference, routes_metrics):
        app.include_router(module.router)
    console.install(app)
    app.add_middleware(BodyLimit, limit=ctx.settings.max_body_bytes)
    return app


def openapi_document(ctx: ApiContext) -> dict[str, Any]:
    """The OpenAPI document of the routes (the same whatever the context holds)."""
    return create_app(ctx).openapi()
