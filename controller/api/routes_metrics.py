"""`/metrics`: the in-process controller's Prometheus metrics (controller.reconcile.metrics).

Served only when this daemon runs the controller (`run_controller`); otherwise 404, since the
controller that runs elsewhere serves its own (`python -m controller --metrics-listen`). The
route needs the viewer role like every other read: app names and phases are what a viewer
sees anyway, and a Prometheus scraping a non-loopback API sends a viewer token
(`authorization: {credentials_file: ...}` in its scrape config). A Prometheus on the same
machine scrapes without one when the daemon grants `allow_anonymous_loopback: viewer`. It is
left out of the OpenAPI document: it answers Prometheus' text format, not the JSON API.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST

from controller.api.auth import VIEWER, context
from controller.api.errors import ApiError

router = APIRouter()


@router.get("/metrics", dependencies=VIEWER, include_in_schema=False)
def metrics(request: Request) -> Response:
    observed = context(request).metrics
    if observed is None:
        raise ApiError(404, "the controller does not run in this API daemon: scrape its own --metrics-listen")
    return Response(observed.exposition(), media_type=CONTENT_TYPE_LATEST)
