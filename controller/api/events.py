"""`GET /api/v1/events`: server-sent events of the controller's decisions and status changes.

The stream follows the object store's watch of MLSysOpsApps (no side channel): each change is
compared with the last one seen of that app and becomes one or more events:
`submitted` (a new app), `spec` (the description changed), `decision` (the placement the
controller wrote changed: node, cluster, action per component, with the explanation's reason),
`status` (phase or conditions changed), `deleted`. Each event's `id` is the object's
resourceVersion, so a client that reconnects with `Last-Event-ID` resumes after it (or from
now, when the store no longer has that history).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from fastapi.concurrency import run_in_threadpool

from controller.api import views
from controller.api.context import ApiContext
from controller.kube import resources
from controller.kube.errors import Gone, Unavailable
from controller.kube.objectapi import WatchEvent

Obj = dict[str, Any]


def _decision(obj: Mapping[str, Any]) -> list[Obj]:
    status = obj.get("status") or {}
    reasons = {e.get("component"): e.get("reason") for e in status.get("explanation") or []}
    return [{**p, "reason": reasons.get(p.get("component"))} for p in status.get("placement") or []]


def _state(obj: Mapping[str, Any]) -> tuple[Any, ...]:
    status = obj.get("status") or {}
    conds = tuple(
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in status.get("conditions") or []
    )
    spec = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    return (
        json.dumps(spec, sort_keys=True),
        json.dumps(status.get("placement"), sort_keys=True),
        status.get("phase"),
        conds,
    )


def changes(
    before: Mapping[str, Any] | None, event_type: str, obj: Mapping[str, Any]
) -> list[tuple[str, Obj]]:
    """The events one watch event makes, given the app as last seen (pure)."""
    name = (obj.get("metadata") or {}).get("name")
    if event_type == "DELETED":
        return [("deleted", {"app": name})]
    now = _state(obj)
    old = _state(before) if before is not None else None
    out: list[tuple[str, Obj]] = []
    if old is None:
        out.append(("submitted", {"app": name, "phase": views.phase(obj)}))
    elif old[0] != now[0]:
        out.append(("spec", {"app": name, "generation": (obj.get("metadata") or {}).get("generation")}))
    if now[1] != (old[1] if old else "null") and (obj.get("status") or {}).get("placement") is not None:
        out.append(("decision", {"app": name, "placement": _decision(obj)}))
    if old is not None and (now[2], now[3]) != (old[2], old[3]):
        status = obj.get("status") or {}
        out.append(
            (
                "status",
                {"app": name, "phase": views.phase(obj), "conditions": list(status.get("conditions") or [])},
            )
        )
    return out


def _frame(kind: str, data: Obj, event_id: str) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


def _next(events: Iterator[WatchEvent]) -> WatchEvent | None:
    return next(events, None)


async def stream(ctx: ApiContext, last_event_id: str | None, limit: int | None) -> AsyncIterator[str]:
    """The event stream; ends after `limit` events when given (else when the client leaves)."""
    namespace = ctx.settings.namespace
    items, version = await run_in_threadpool(ctx.store.list, resources.APP, namespace)
    seen: dict[str, Obj] = {o["metadata"]["name"]: o for o in items}
    if last_event_id:
        version = last_event_id
    sent = 0
    yield ": connected\n\n"
    while limit is None or sent < limit:
        events = ctx.store.watch(
            resources.APP, namespace, version, timeout_seconds=ctx.settings.watch_timeout
        )
        try:
            while limit is None or sent < limit:
                event = await run_in_threadpool(_next, events)
                if event is None:
                    break
                version = event.object.get("metadata", {}).get("resourceVersion") or version
                if event.type == "BOOKMARK":
                    continue
                name = event.object["metadata"]["name"]
                for kind, data in changes(seen.get(name), event.type, event.object):
                    yield _frame(kind, data, version)
                    sent += 1
                    if limit is not None and sent >= limit:
                        break
                if event.type == "DELETED":
                    seen.pop(name, None)
                else:
                    seen[name] = event.object
            yield ": keep-alive\n\n"
        except Gone:  # the history moved on: continue from now
            _, version = await run_in_threadpool(ctx.store.list, resources.APP, namespace)
        except Unavailable:
            yield _frame("error", {"message": "object store unavailable; retrying"}, version)
        finally:
            with contextlib.suppress(ValueError):  # still running in a worker thread: it ends at its timeout
                events.close()  # type: ignore[attr-defined]
