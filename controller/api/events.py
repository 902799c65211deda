"""`GET /api/v1/events`: server-sent events of the controller's decisions and status changes.

The stream follows the object store's watch of MLSysOpsApps (no side channel): each change is
compared with the last one seen of that app and becomes one or more events:
`submitted` (a new app), `spec` (the description changed), `decision` (the placement the
controller wrote changed: node, cluster, action per component, with the explanation's reason),
`status` (phase or conditions changed), `deleted` (and `missed`, with a count, when a client
reading too slowly let the buffer of 10,000 overflow). Each event's `id` is the object's
resourceVersion, so a client that reconnects with `Last-Event-ID` resumes after it (or from
now, when the store no longer has that history).
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import AsyncIterator, Mapping
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
    """The events one watch event makes, given the app as last seen (pure). Without a last-seen
    state (a new app, or a client resuming from Last-Event-ID), what the object holds is new."""
    meta = obj.get("metadata") or {}
    name = meta.get("name")
    if event_type == "DELETED":
        return [("deleted", {"app": name})]
    status = obj.get("status") or {}
    now = _state(obj)
    old = _state(before) if before is not None else None
    out: list[tuple[str, Obj]] = []
    if event_type == "ADDED" and old is None:
        out.append(("submitted", {"app": name, "phase": views.phase(obj)}))
    elif old[0] != now[0] if old is not None else not views.current(obj):
        out.append(("spec", {"app": name, "generation": meta.get("generation")}))
    if status.get("placement") is not None and (old is None or old[1] != now[1]):
        out.append(("decision", {"app": name, "placement": _decision(obj)}))
    if status.get("phase") is not None and (old is None or (now[2], now[3]) != (old[2], old[3])):
        out.append(
            (
                "status",
                {"app": name, "phase": views.phase(obj), "conditions": list(status.get("conditions") or [])},
            )
        )
    return out


def _frame(kind: str, data: Obj, event_id: str) -> str:
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(data, default=str)}\n\n"


class _Follower:
    """The store's watch, followed in one thread of its own, feeding a queue.

    When the client leaves, the thread finishes the watch it is in (it ends at its timeout)
    instead of cutting the connection mid-stream, then stops."""

    def __init__(self, ctx: ApiContext, version: str, buffer: int = 10_000) -> None:
        self.ctx = ctx
        self.version = version
        self.events: queue.Queue[WatchEvent | str] = queue.Queue(maxsize=buffer)
        self.stopping = threading.Event()
        self.missed = 0

    def run(self) -> None:
        store, namespace = self.ctx.store, self.ctx.settings.namespace
        while not self.stopping.is_set():
            try:
                for event in store.watch(
                    resources.APP, namespace, self.version, timeout_seconds=self.ctx.settings.watch_timeout
                ):
                    self.version = event.object.get("metadata", {}).get("resourceVersion") or self.version
                    self._put(event)
            except Gone:  # the history moved on: continue from now
                self.version = store.list(resources.APP, namespace)[1]
            except Unavailable:
                self._put("object store unavailable; retrying")
                self.stopping.wait(1.0)

    def _put(self, item: WatchEvent | str) -> None:
        if self.stopping.is_set():
            return
        try:
            self.events.put_nowait(item)
        except queue.Full:  # a client that stopped reading: it is told how many it missed
            self.missed += 1

    def get(self) -> WatchEvent | str | None:
        try:
            return self.events.get(timeout=1.0)
        except queue.Empty:
            return None


async def stream(ctx: ApiContext, last_event_id: str | None, limit: int | None) -> AsyncIterator[str]:
    """The event stream; ends after `limit` events when given (else when the client leaves)."""
    items, version = await run_in_threadpool(ctx.store.list, resources.APP, ctx.settings.namespace)
    seen: dict[str, Obj] = {o["metadata"]["name"]: o for o in items}
    follower = _Follower(ctx, last_event_id or version)
    threading.Thread(target=follower.run, name="api-events", daemon=True).start()
    sent, idle = 0, 0
    try:
        yield ": connected\n\n"
        while limit is None or sent < limit:
            item = await run_in_threadpool(follower.get)
            if item is None:
                idle += 1
                if idle % 15 == 0:
                    yield ": keep-alive\n\n"
                continue
            if follower.missed:
                missed, follower.missed = follower.missed, 0
                yield _frame("missed", {"count": missed}, follower.version)
            if isinstance(item, str):
                yield _frame("error", {"message": item}, follower.version)
                continue
            if item.type == "BOOKMARK":
                continue
            name = item.object["metadata"]["name"]
            event_id = item.object["metadata"].get("resourceVersion", "")
            for kind, data in changes(seen.get(name), item.type, item.object)[
                : None if limit is None else limit - sent
            ]:
                yield _frame(kind, data, event_id)
                sent += 1
            if item.type == "DELETED":
                seen.pop(name, None)
            else:
                seen[name] = item.object
    finally:
        follower.stopping.set()
