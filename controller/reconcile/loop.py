"""The controller's threads: informers feed a work queue, workers reconcile, node agents polled.

App events queue their app only when its spec changed (generation ahead of the status's
observedGeneration) or the QoS violations reported on it changed (the reconciler's QosSource
reads them from the object), so the status the loop itself writes does not wake it again. Node and
cluster events invalidate the inventory and queue every app once (coalesced), since any
placement may change; a periodic resync re-queues all apps to repair drift (an object deleted
behind the controller's back).
"""

from __future__ import annotations

import functools
import gc
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable

from controller.inventory import cluster_readiness
from controller.kube.api import Obj
from controller.mechanisms.nodeagent_records import FIELD as RECORD_FIELD
from controller.policies.base import QosViolation
from controller.reconcile.informer import MEMBER_CLUSTER, Informers
from controller.reconcile.metrics import NoMetrics, ReconcileObserver, app_state
from controller.reconcile.nodesync import NodeSync
from controller.reconcile.queue import WorkQueue
from controller.reconcile.reconciler import InventoryCache, Outcome, Reconciler

log = logging.getLogger(__name__)


class Controller:
    """The daemon's threads around one Reconciler; built by bootstrap.build, run by `start`."""

    def __init__(self, reconciler: Reconciler, inventory: InventoryCache, informers: Informers,
                 queue: WorkQueue | None = None, node_sync: NodeSync | None = None, workers: int = 2,
                 resync_period: float = 300.0, inventory_period: float = 30.0,
                 metrics: ReconcileObserver | None = None) -> None:
        """`metrics` learns every app event and reconcile outcome (controller.reconcile.metrics);
        it outlives the Controller when the REST API restarts it with a new policy chain."""
        self.reconciler = reconciler
        self.inventory = inventory
        self.informers = informers
        self.apps, self.nodes, self.clusters = informers.apps, informers.nodes, informers.clusters
        self.queue = queue or WorkQueue()
        self.node_sync = node_sync
        self.workers = workers
        self.metrics: ReconcileObserver = metrics if metrics is not None else NoMetrics()
        self.resync_period = resync_period
        self.inventory_period = inventory_period
        self.apps.add_handler(self._on_app)
        self.nodes.add_handler(self._on_world)
        self.clusters.add_handler(self._on_world)
        if informers.members is not None:
            informers.members.add_handler(self._on_world)
        self.freeze_after_sync = True
        self.outcomes: dict[str, Outcome] = {}  # last outcome per app, for tests and metrics
        self._qos_seen: dict[str, tuple[QosViolation, ...]] = {}  # per app: violations last reported
        self._world_seen: dict[tuple[str, str], str] = {}  # (kind, name) -> what placement reads of it
        self.reconciles = 0
        self._kick = threading.Event()
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ life cycle

    def start(self, stop: threading.Event) -> None:
        for informer in self.informers.all():
            self._spawn(f"informer-{informer.resource.plural}", functools.partial(informer.run, stop))
        self._spawn("sync-wait", lambda: self._start_workers(stop))

    def run(self, stop: threading.Event) -> None:
        self.start(stop)
        stop.wait()
        self.shutdown()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the workers and close the mechanisms, waiting at most `timeout` seconds in all
        for the threads: a worker finishes its reconcile, but an informer blocked in a watch
        stream only sees `stop` when the server ends it (minutes), so it ends with the process
        (the threads are daemons)."""
        self.queue.close()
        self._kick.set()
        join_all(self._threads, timeout)
        for mechanism in self.reconciler.mechanisms:  # adapters holding threads or channels
            close = getattr(mechanism, "close", None)
            if callable(close):
                close()

    def _start_workers(self, stop: threading.Event) -> None:
        for informer in self.informers.all():
            while not informer.synced.wait(0.1):
                if stop.is_set():
                    return
        self.reconciler.seed(self.apps.items())
        self.metrics.retain(self._key(o) for o in self.apps.items())  # deleted while nobody watched
        if self.freeze_after_sync:
            # The informers' caches (10,000 nodes are millions of objects) live as long as the
            # daemon: keep them out of the cyclic collector, whose full passes would otherwise
            # stall reconciles for hundreds of milliseconds.
            self.inventory.get()  # built now, so it is frozen with the caches it comes from
            gc.collect()
            gc.freeze()
        for i in range(self.workers):
            self._spawn(f"worker-{i}", self._work)
        self._spawn("requeue-all", lambda: self._requeue_loop(stop))
        if self.node_sync is not None:
            self._spawn("node-sync", lambda: self._every(stop, self.inventory_period, self._sync_nodes))

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=f"controller-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()

    # ------------------------------------------------------------------ events

    def _on_app(self, event_type: str, obj: Obj) -> None:
        name = obj["metadata"]["name"]
        generation = obj["metadata"].get("generation")
        observed = (obj.get("status") or {}).get("observedGeneration")
        violations = () if event_type == "DELETED" else self.reconciler.qos.violations(obj)
        qos_changed = violations != self._qos_seen.get(name, ())
        if violations:
            self._qos_seen[name] = violations
        else:
            self._qos_seen.pop(name, None)
        if event_type == "DELETED":
            self.metrics.app_gone(self._key(obj))
        else:  # the reconciler's own status writes too: the metrics show what the status says
            self.metrics.app_seen(app_state(obj, violations, self.reconciler.namespace))
        if event_type in ("ADDED", "DELETED") or generation != observed or qos_changed:
            self.queue.add(name)

    def _key(self, obj: Obj) -> tuple[str, str]:
        meta = obj["metadata"]
        return str(meta.get("namespace") or self.reconciler.namespace), meta["name"]

    def _on_world(self, event_type: str, obj: Obj) -> None:
        """A node or cluster changed what placement reads: rebuild the inventory, requeue every
        app. The controller's own bookkeeping in a node's status (the node settings record)
        is not such a change: requeueing the fleet on every apply would cost O(apps) each."""
        key = (str(obj.get("kind")), obj["metadata"]["name"])
        seen = None if event_type == "DELETED" else placement_view(obj)
        if seen is not None and self._world_seen.get(key) == seen:
            return
        if seen is None:
            self._world_seen.pop(key, None)
        else:
            self._world_seen[key] = seen
        self.inventory.invalidate()
        self._kick.set()

    def requeue_all(self) -> None:
        for obj in self.apps.items():
            self.queue.add(obj["metadata"]["name"])

    def _requeue_loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            if self._kick.wait(self.resync_period):
                self._kick.clear()
            if not stop.is_set():
                self.requeue_all()

    def _sync_nodes(self) -> None:
        assert self.node_sync is not None
        for result in self.node_sync.sync_all():
            if not result.ready:
                log.warning("node agent %s: %s", result.target, result.message)

    @staticmethod
    def _every(stop: threading.Event, period: float, action: Callable[[], None]) -> None:
        while not stop.is_set():
            try:
                action()
            except Exception:
                log.exception("periodic %s failed", getattr(action, "__name__", action))
            stop.wait(period)

    # ------------------------------------------------------------------ workers

    def _work(self) -> None:
        while True:
            key = self.queue.get()
            if key is None:
                return
            name = str(key)
            started = time.perf_counter()
            try:
                outcome = self.reconciler.reconcile(name)
            except Exception as exc:  # a bug must not kill the worker: back off and report
                log.exception("reconcile %s failed", name)
                outcome = Outcome("Unknown", retry=True, message=f"{type(exc).__name__}: {exc}")
            finally:
                self.queue.done(key)
            self.outcomes[name] = outcome
            self.reconciles += 1
            self.metrics.reconciled(outcome.phase, time.perf_counter() - started)
            if outcome.retry:
                delay = self.queue.retry(key)
                log.info("%s: %s (%s); retrying in %.2fs", name, outcome.phase, outcome.message, delay)
            else:
                self.queue.forget(key)


def placement_view(obj: Obj) -> str:
    """The object as placement reads it: without server bookkeeping and the settings record;
    of a Karmada member cluster, only whether it is Ready (its status also carries resource
    summaries and heartbeats, which would requeue every app)."""
    if obj.get("apiVersion") == MEMBER_CLUSTER.api_version and obj.get("kind") == MEMBER_CLUSTER.kind:
        return json.dumps(cluster_readiness([obj]))
    meta = {k: v for k, v in obj["metadata"].items()
            if k not in ("resourceVersion", "managedFields", "generation")}
    status = {k: v for k, v in (obj.get("status") or {}).items()
              if k not in (RECORD_FIELD, "lastInventory")}
    rest = {k: v for k, v in obj.items() if k not in ("metadata", "status")}
    return json.dumps([meta, status, rest], sort_keys=True, default=str)


def join_all(threads: Iterable[threading.Thread], timeout: float,
             clock: Callable[[], float] = time.monotonic) -> list[threading.Thread]:
    """Join the threads within one deadline (not `timeout` each: six informers stuck in their
    watches made a SIGTERM take 30 s); the ones still running are returned."""
    deadline = clock() + timeout
    left = []
    for thread in threads:
        thread.join(max(0.0, deadline - clock()))
        if thread.is_alive():
            left.append(thread)
    return left
