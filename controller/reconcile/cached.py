"""The API the mechanisms write through, with the controller's own workloads read from informers.

Every realize needs the app's existing Deployments, Jobs and Services (to write only what
differs, and to delete what the plan no longer wants) and availability waits list them again.
Listing them from the API server costs one request per kind per reconcile; the controller
already runs a list-watch of them (`Informers.owned`), so `CachedLists` answers those lists
from its cache, matching the label selector locally, and passes every other call through.

Read-your-writes: an informer learns of a write only when its watch event arrives, a few
milliseconds later. A reconcile starting in between must still see it (or it would miss a
Deployment it should delete), so what this adapter applied or deleted overlays the cache
until the informer delivers the event of that very write (the same resourceVersion, or the
deletion). The event may also come first (the apply's answer is slower than the watch): the
versions each object's recent events carried are kept, and a write the informer already
reported is not overlaid. An overlay the informer never confirms (a relist jumped past it)
expires after OVERLAY_TTL seconds. Anything the cache cannot answer (another namespace, a
selector that is not `key=value,...`, an informer not synced yet) goes to the API server.
"""

from __future__ import annotations

import collections
import functools
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from controller.kube.objectapi import FIELD_MANAGER, Obj, ObjectApi, WatchEvent
from controller.kube.resources import Resource, resource_for
from controller.reconcile.informer import Informer

OVERLAY_TTL = 30.0
RECENT_EVENTS = 8  # versions remembered per object


class CachedLists:
    def __init__(self, api: ObjectApi, owned: Mapping[Resource, Informer], namespace: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.api = api
        self.owned = dict(owned)
        self.namespace = namespace
        self.clock = clock
        self._lock = threading.Lock()
        # (kind, name) → (as written, or None: deleted; when)
        self._written: dict[tuple[Resource, str], tuple[Obj | None, float]] = {}
        self._recent: dict[tuple[Resource, str], collections.deque[str]] = {}  # versions the events carried
        for res, informer in self.owned.items():
            informer.add_handler(functools.partial(self._seen, res))

    # ------------------------------------------------------------------ reads

    def list(self, res: Resource, namespace: str = "", label_selector: str = "") -> tuple[list[Obj], str]:
        informer = self.owned.get(res)
        wanted = _equalities(label_selector)
        if informer is None or namespace != self.namespace or wanted is None or not informer.synced.is_set():
            return self.api.list(res, namespace, label_selector)
        version = informer.version
        items = {o["metadata"]["name"]: o for o in informer.items()}
        now = self.clock()
        with self._lock:
            for key, (obj, when) in list(self._written.items()):
                if now - when > OVERLAY_TTL:
                    del self._written[key]
                elif key[0] != res:
                    continue
                elif obj is None:
                    items.pop(key[1], None)
                else:
                    items[key[1]] = obj
        matching = [o for o in items.values() if _matches(o, wanted)]
        return matching, version

    def get(self, res: Resource, namespace: str, name: str) -> Obj:
        return self.api.get(res, namespace, name)

    def watch(self, res: Resource, namespace: str, resource_version: str,
              timeout_seconds: int = 60) -> Iterator[WatchEvent]:
        return self.api.watch(res, namespace, resource_version, timeout_seconds)

    # ------------------------------------------------------------------ writes

    def apply(self, obj: Mapping[str, Any], field_manager: str = FIELD_MANAGER, force: bool = True) -> Obj:
        stored = self.api.apply(obj, field_manager, force)
        res = resource_for(obj)
        if res in self.owned and (obj.get("metadata") or {}).get("namespace", "") == self.namespace:
            key = (res, stored["metadata"]["name"])
            with self._lock:
                if stored["metadata"].get("resourceVersion") not in self._recent.get(key, ()):
                    self._written[key] = (stored, self.clock())
        return stored

    def replace_status(self, res: Resource, obj: Obj) -> Obj:
        return self.api.replace_status(res, obj)

    def delete(self, res: Resource, namespace: str, name: str, propagation: str = "Background") -> bool:
        deleted = self.api.delete(res, namespace, name, propagation)
        informer = self.owned.get(res)
        if informer is not None and namespace == self.namespace and informer.get(name) is not None:
            with self._lock:
                self._written[(res, name)] = (None, self.clock())
        return deleted

    def _seen(self, res: Resource, event_type: str, obj: Obj) -> None:
        """An event of the informer: once it reports our write, its cache answers for it again."""
        key = (res, obj["metadata"]["name"])
        version = obj["metadata"].get("resourceVersion", "")
        with self._lock:
            if event_type == "DELETED":
                self._recent.pop(key, None)
            else:
                self._recent.setdefault(key, collections.deque(maxlen=RECENT_EVENTS)).append(version)
            written = self._written.get(key)
            if written is None:
                return
            obj_written = written[0]
            if (obj_written is None and event_type == "DELETED") or (
                obj_written is not None and obj_written["metadata"].get("resourceVersion") == version
            ):
                del self._written[key]


def _equalities(selector: str) -> dict[str, str] | None:
    """`a=b,c=d` as a mapping; None for anything else (set-based or negated selectors)."""
    out: dict[str, str] = {}
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, sep, value = term.partition("=")
        if not sep or key.endswith("!") or value.startswith("="):
            return None
        out[key.strip()] = value.strip()
    return out


def _matches(obj: Obj, wanted: Mapping[str, str]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(labels.get(k) == v for k, v in wanted.items())
