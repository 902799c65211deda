"""`/api/v1/events`: the SSE route (see controller.api.events for what is sent)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from controller.api import events
from controller.api.auth import VIEWER, context

router = APIRouter(prefix="/api/v1", tags=["events"])


@router.get(
    "/events",
    dependencies=VIEWER,
    response_class=StreamingResponse,
    summary="Server-sent events: submitted, spec, decision, status, deleted",
    responses={200: {"content": {"text/event-stream": {}}}},
)
def app_events(
    request: Request,
    limit: Annotated[int | None, Query(ge=1, description="End after this many events")] = None,
    last_event_id: Annotated[str | None, Header()] = None,
) -> StreamingResponse:
    return StreamingResponse(
        events.stream(context(request), last_event_id, limit),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )
