"""List-then-watch of one kind into a local cache, robust to what real API servers do.

- the first list fills the cache; the watch continues from the list's resourceVersion;
- 410 Gone (the resourceVersion was compacted) → list again, and report what changed in
  between as synthetic events, deletions included, so handlers never miss one;
- the server ending a watch (timeoutSeconds) → watch again from the last resourceVersion;
- the server unreachable / 5xx → back off exponentially and list again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from controller.kube.errors import Gone, KubeError
from controller.kube.objectapi import Obj, ObjectApi
from controller.kube.resources import APP, CLUSTER, NODE, Resource
from controller.reconcile.queue import Backoff

log = logging.getLogger(__name__)

WATCH_BACKOFF = Backoff(base=0.1, cap=10.0)
Handler = Callable[[str, Obj], None]  # (event type, object)


class Informer:
    """One kind's list-watch and cache; handlers added with `add_handler` get every event."""

    def __init__(self, api: ObjectApi, resource: Resource, namespace: str,
                 backoff: Backoff = WATCH_BACKOFF, watch_timeout: int = 300) -> None:
        self.api, self.resource, self.namespace = api, resource, namespace
        self.handlers: list[Handler] = []
        self.backoff = backoff
        self.watch_timeout = watch_timeout
        self.cache: dict[str, Obj] = {}
        self.synced = threading.Event()
        self.relists = 0  # lists after the first one (410 Gone, outages): observable in tests
        self.failures = 0
        self._lock = threading.Lock()
        self._last_rv: str | None = None  # of the last event seen: where a broken watch resumes

    def add_handler(self, handler: Handler) -> None:
        """Before `run`: handlers are called from the informer's thread, in the order added."""
        self.handlers.append(handler)

    def handler(self, event_type: str, obj: Obj) -> None:
        for handler in self.handlers:
            handler(event_type, obj)

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self.cache.values())

    @property
    def version(self) -> str:
        """The resourceVersion the cache is at (of the last list or event): a watch from it
        continues where the cache stands."""
        return self._last_rv or ""

    def get(self, name: str) -> Obj | None:
        """The cached object (as the last event delivered it), None when there is none."""
        with self._lock:
            return self.cache.get(name)

    def run(self, stop: threading.Event) -> None:
        """List once, then watch from where the last event left off, as client-go's reflector
        does: a broken stream is resumed (after backoff), only 410 Gone forces a new list."""
        failures = 0
        rv: str | None = None
        while not stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                    failures = 0
                rv = self._watch_once(rv)
                failures = 0
            except Gone:
                log.info("%s: resourceVersion expired, relisting", self.resource.plural)
                rv = None
            except KubeError as exc:
                rv = self._last_rv or rv
                failures += 1
                self.failures += 1
                delay = self.backoff.delay(failures)
                log.warning("%s: %s; retrying in %.2fs", self.resource.plural, exc, delay)
                stop.wait(delay)

    def _relist(self) -> str:
        items, rv = self.api.list(self.resource, self.namespace)
        self._last_rv = rv
        if self.synced.is_set():
            self.relists += 1
        fresh = {o["metadata"]["name"]: o for o in items}
        with self._lock:
            old, self.cache = self.cache, dict(fresh)
        for name, obj in fresh.items():
            previous = old.get(name)
            if previous is None:
                self.handler("ADDED", obj)
            elif previous["metadata"].get("resourceVersion") != obj["metadata"].get("resourceVersion"):
                self.handler("MODIFIED", obj)
        for name, obj in old.items():
            if name not in fresh:
                self.handler("DELETED", obj)
        self.synced.set()
        return rv

    def _watch_once(self, rv: str) -> str:
        self._last_rv = rv
        for event in self.api.watch(self.resource, self.namespace, rv, self.watch_timeout):
            obj = event.object
            rv = self._last_rv = obj.get("metadata", {}).get("resourceVersion") or rv
            if event.type == "BOOKMARK":
                continue
            name = obj["metadata"]["name"]
            with self._lock:
                if event.type == "DELETED":
                    self.cache.pop(name, None)
                else:
                    self.cache[name] = obj
            self.handler(event.type, obj)
        return rv


# Karmada's member clusters (cluster-scoped), read for their Ready condition.
MEMBER_CLUSTER = Resource("cluster.karmada.io", "v1alpha1", "clusters", "Cluster", namespaced=False)


class Informers:
    """The controller's list-watches: apps, and the nodes and clusters the inventory is built
    from (`world`, which reads the caches: no API call per reconcile); with `member_clusters`
    (the karmada mechanism), Karmada's Cluster objects too, for readiness; the `owned` kinds
    (Deployments and Jobs) the mechanisms list on every realize."""

    def __init__(self, api: ObjectApi, namespace: str, backoff: Backoff = WATCH_BACKOFF,
                 watch_timeout: int = 300, member_clusters: bool = False,
                 owned: Sequence[Resource] = ()) -> None:
        self.apps = Informer(api, APP, namespace, backoff, watch_timeout)
        self.nodes = Informer(api, NODE, namespace, backoff, watch_timeout)
        self.clusters = Informer(api, CLUSTER, namespace, backoff, watch_timeout)
        self.members = Informer(api, MEMBER_CLUSTER, "", backoff, watch_timeout) if member_clusters else None
        # the controller's own workloads, which the mechanisms read (see controller.reconcile.cached)
        self.owned = {res: Informer(api, res, namespace, backoff, watch_timeout) for res in owned}

    def world(self) -> tuple[list[Obj], list[Obj], list[Obj]]:
        """Nodes, MLSysOps clusters and Karmada member clusters, from the caches."""
        return self.nodes.items(), self.clusters.items(), self.members.items() if self.members else []

    def all(self) -> tuple[Informer, ...]:
        """In the order the workers wait for them to sync: the world first, then the apps."""
        members = [self.members] if self.members else []
        return (self.nodes, self.clusters, *members, *self.owned.values(), self.apps)
