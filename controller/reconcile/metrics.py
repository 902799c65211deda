"""The controller's Prometheus metrics, on a registry of its own (never the global one).

Per app, what its stored object says, so a dashboard or an alert reads what `mlsysops apps
status` shows: the phase (one-hot over the CRD's phases), Ready, how many components have
no placement (the policies found no node that fits; the Planned condition says why), and the
QoS violations monitoring reports on the app (what the reconciler's QosSource reads). The loop
feeds them from every app event the informer delivers (`app_seen`), the status writes of the
reconciler included, and drops an app's series when it is deleted (`app_gone`) or was deleted
while no controller watched (`retain`, after the informers' first list): no stale series.
The per-app families are collected at scrape time from those states, like the bridge's
device families; reconciles are a histogram by outcome phase whose `_count` is the
reconcile counter (as the node agent's apply histogram counts applies by outcome).

    mlsysops_controller_app_phase{namespace, app, phase}                       1 for the current one
    mlsysops_controller_app_ready{namespace, app}                              0/1
    mlsysops_controller_app_components_unplaced{namespace, app}                count
    mlsysops_controller_app_qos_violations{namespace, app, component, metric}  count (one per node)
    mlsysops_controller_reconcile_duration_seconds{phase}                      histogram
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controller.policies.base import QosViolation

#: The phases of an MLSysOpsApp's status (deploy/crds/mlsysopsapps.yaml).
PHASES = ("Pending", "Planned", "Deploying", "Deployed", "Degraded", "Failed")
#: How a reconcile ends (controller.reconcile.reconciler.Outcome.phase), counted from 0.
OUTCOMES = ("Deploying", "Deployed", "Degraded", "Failed", "Unknown", "Deleting", "Deleted")
# From a cache hit (milliseconds) to an apply waiting for workloads (the availability timeout).
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

AppKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class AppState:
    """One app as its stored object shows it, and the QoS violations reported on it."""

    namespace: str
    name: str
    phase: str | None  # None: not reconciled yet
    ready: bool
    unplaced: int
    qos: tuple[tuple[str, str, int], ...] = ()  # (component, metric, violations)

    @property
    def key(self) -> AppKey:
        return self.namespace, self.name


def app_state(obj: Mapping[str, Any], violations: Iterable[QosViolation], namespace: str) -> AppState:
    """The state of one MLSysOpsApp object (`namespace`: where it lives when its metadata does
    not say). A component is unplaced when its placement entry has neither node nor cluster."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    unplaced = sum(1 for p in status.get("placement") or [] if not (p.get("node") or p.get("cluster")))
    counts = Counter((v.component, v.metric) for v in violations)
    return AppState(str(meta.get("namespace") or namespace), str(meta.get("name", "")), status.get("phase"),
                    ready, unplaced, tuple((c, m, n) for (c, m), n in sorted(counts.items())))


class ReconcileObserver(Protocol):
    """What the reconcile loop reports (controller.reconcile.loop.Controller)."""

    def app_seen(self, state: AppState) -> None: ...

    def app_gone(self, key: AppKey) -> None: ...

    def retain(self, keys: Iterable[AppKey]) -> None:
        """Only these apps exist (the informers' first list): forget the others."""

    def reconciled(self, phase: str, seconds: float) -> None: ...


class NoMetrics:
    """Nothing is exported (plan mode, tests of other parts)."""

    def app_seen(self, state: AppState) -> None:
        pass

    def app_gone(self, key: AppKey) -> None:
        pass

    def retain(self, keys: Iterable[AppKey]) -> None:
        pass

    def reconciled(self, phase: str, seconds: float) -> None:
        pass


class _AppCollector(Collector):
    def __init__(self, states: Callable[[], list[AppState]]) -> None:
        self._states = states

    def collect(self) -> Iterator[Metric]:
        app = ["namespace", "app"]
        phase = GaugeMetricFamily("mlsysops_controller_app_phase",
                                  "1 for the app's status phase, 0 for the others", labels=[*app, "phase"])
        ready = GaugeMetricFamily("mlsysops_controller_app_ready", "1 when the app's Ready condition is True",
                                  labels=app)
        unplaced = GaugeMetricFamily(
            "mlsysops_controller_app_components_unplaced",
            "Components of the app that no node fits (its Planned condition says why)", labels=app)
        qos = GaugeMetricFamily(
            "mlsysops_controller_app_qos_violations",
            "QoS violations reported on the app (the mlsysops.eu/qos-violations annotation), per component"
            " and metric", labels=[*app, "component", "metric"])
        for s in self._states():
            for name in PHASES:
                phase.add_metric([s.namespace, s.name, name], 1 if s.phase == name else 0)
            ready.add_metric([s.namespace, s.name], 1 if s.ready else 0)
            unplaced.add_metric([s.namespace, s.name], s.unplaced)
            for component, metric, n in s.qos:
                qos.add_metric([s.namespace, s.name, component, metric], n)
        yield from (phase, ready, unplaced, qos)


class ControllerMetrics:
    """The ReconcileObserver behind /metrics: its own registry, `exposition()` for a server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._apps: dict[AppKey, AppState] = {}
        self._lock = threading.Lock()
        self._duration = Histogram("mlsysops_controller_reconcile_duration_seconds",
                                   "Reconciles by outcome phase, and how long they took (_count counts them)",
                                   ["phase"], registry=self.registry, buckets=BUCKETS)
        for name in OUTCOMES:  # at 0 from the start, so the first of each is an increase
            self._duration.labels(phase=name)
        self.registry.register(_AppCollector(self._states))

    def app_seen(self, state: AppState) -> None:
        with self._lock:
            self._apps[state.key] = state

    def app_gone(self, key: AppKey) -> None:
        with self._lock:
            self._apps.pop(key, None)

    def retain(self, keys: Iterable[AppKey]) -> None:
        keep = set(keys)
        with self._lock:
            for key in [k for k in self._apps if k not in keep]:
                del self._apps[key]

    def reconciled(self, phase: str, seconds: float) -> None:
        self._duration.labels(phase=phase).observe(seconds)

    def exposition(self) -> bytes:
        """The text format (version 0.0.4), what Prometheus scrapes."""
        return generate_latest(self.registry)

    def _states(self) -> list[AppState]:
        with self._lock:
            return sorted(self._apps.values(), key=lambda s: s.key)
