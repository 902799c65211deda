"""Per-app and per-component performance, read from Prometheus: the REST API's PerformanceSource.

Where the numbers come from:
- CPU and memory: the node agents' `workloads` collector (one series per workload, labelled
  with its name). Workloads are named by the local mechanism (`<app>.<component>.<replica>`),
  so one query per metric selects the app's workloads by name prefix and each series is
  mapped back to its component by recomputing the name, never by guessing from dots. A
  component's value is the sum over its replicas, the app's the sum over its components.
  `cpu_cores` is the rate over `rate_window` (None until Prometheus holds two samples).
- QoS: each `qos_metrics[].application_metric_id` of a component is a Prometheus metric of
  that name (exported by the app, or a bridge); the series labelled `component=<name>` are
  used when there are any, else those labelled `app=<app>`, else all of them. The value
  reported is the worst one with respect to the relation (the highest for lower_or_equal, the
  lowest for greater_or_equal, the mean for equal), and `qos` says whether the target is met.

A metric the description implies but no sample exists for yet is None, never 0. Prometheus
being unreachable is a PortError 503; an app the store does not have, a 404.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from controller.api.ports import PortError
from controller.kube import resources
from controller.kube.errors import NotFound
from controller.kube.objectapi import ObjectApi
from controller.mechanisms.local import app_prefix, workload_name
from controller.model import App, Component, DescriptionError, QosMetric, parse_document
from controller.telemetry.prometheus import MetricsUnavailable, Series

CPU_SERIES = "mlsysops_nodeagent_workload_cpu_usage_seconds_total"
MEMORY_SERIES = "mlsysops_nodeagent_workload_memory_usage_bytes"
METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
WINDOW = re.compile(r"[1-9][0-9]*(ms|s|m|h)")
RESOURCE_METRICS = ("cpu_cores", "cpu_seconds_total", "memory_bytes")


class Querier(Protocol):
    """Prometheus' instant queries (controller.telemetry.prometheus.PrometheusHttp)."""

    url: str

    def query(self, promql: str) -> list[Series]: ...


class PrometheusPerformance:
    """PerformanceSource over a Prometheus that scrapes the node agents (see the module doc)."""

    def __init__(self, prometheus: Querier, store: ObjectApi, rate_window: str = "1m") -> None:
        if not WINDOW.fullmatch(rate_window):
            raise ValueError(f"rate_window: {rate_window!r} is not a Prometheus duration (e.g. 1m)")
        self._prometheus = prometheus
        self._store = store
        self._window = rate_window

    def app_performance(self, namespace: str, name: str) -> dict[str, Any]:
        app = self._app(namespace, name)
        selector = f'{{workload=~"{_regex_quote(app_prefix(app.name))}.*"}}'
        try:
            cpu_rate = self._prometheus.query(f"rate({CPU_SERIES}{selector}[{self._window}])")
            cpu_total = self._prometheus.query(CPU_SERIES + selector)
            memory = self._prometheus.query(MEMORY_SERIES + selector)
            qos_series = self._qos_series(app)
        except MetricsUnavailable as exc:
            raise PortError(f"metrics backend unavailable: {exc}", 503) from exc
        per_component = {
            "cpu_cores": _by_component(app, cpu_rate),
            "cpu_seconds_total": _by_component(app, cpu_total),
            "memory_bytes": _by_component(app, memory),
        }
        components: dict[str, dict[str, float | None]] = {}
        qos: dict[str, dict[str, dict[str, Any]]] = {}
        for component in app.components:
            values = {m: per_component[m].get(component.name) for m in RESOURCE_METRICS}
            for metric in component.qos_metrics:
                if metric_id := metric.application_metric_id:
                    value = _qos_value(app, component, metric, qos_series.get(metric_id, []))
                    values[metric_id] = value
                    qos.setdefault(component.name, {})[metric_id] = _verdict(metric, value)
            components[component.name] = values
        totals = {m: _sum(c[m] for c in components.values()) for m in RESOURCE_METRICS}
        return {"app": totals, "components": components, "qos": qos, "source": self._prometheus.url}

    def _app(self, namespace: str, name: str) -> App:
        try:
            obj = self._store.get(resources.APP, namespace, name)
        except NotFound:
            raise PortError(f"no app {name!r} in namespace {namespace}", 404, "name") from None
        try:
            app = parse_document(obj, namespace)
        except DescriptionError as exc:
            raise PortError(f"app {name!r} has an invalid description: {exc}", 409, "name") from exc
        if not isinstance(app, App):
            raise PortError(f"{name!r} is not an MLSysOpsApp", 409, "name")
        return app

    def _qos_series(self, app: App) -> dict[str, list[Series]]:
        ids = (m.application_metric_id for c in app.components for m in c.qos_metrics)
        names = sorted({i for i in ids if i and METRIC_NAME.fullmatch(i)})
        if not names:
            return {}
        found: dict[str, list[Series]] = {}
        for series in self._prometheus.query(f'{{__name__=~"{"|".join(names)}"}}'):
            found.setdefault(series.labels.get("__name__", ""), []).append(series)
        return found


def _by_component(app: App, series: Sequence[Series]) -> dict[str, float]:
    """Sum of the series per component, each workload name mapped back exactly."""
    names = {c.name: c for c in app.components}
    sums: dict[str, float] = {}
    for item in series:
        component = component_of(app, names, item.labels.get("workload", ""))
        if component is not None:
            sums[component] = sums.get(component, 0.0) + item.value
    return sums


def component_of(app: App, components: Mapping[str, Component], workload: str) -> str | None:
    """The component whose workload (any replica, any container) is named `workload`."""
    suffix = workload.rpartition(".")[2]
    for name in components:
        if workload_name(app.name, name, suffix) == workload:
            return name
    return None


def _qos_value(app: App, component: Component, metric: QosMetric, series: Sequence[Series]) -> float | None:
    chosen = [s for s in series if s.labels.get("component") == component.name]
    if not chosen:
        chosen = [s for s in series if "component" not in s.labels and s.labels.get("app") == app.name]
    if not chosen:
        chosen = [s for s in series if "component" not in s.labels and "app" not in s.labels]
    values = [s.value for s in chosen if s.value == s.value]  # NaN: no value
    if not values:
        return None
    if metric.relation == "lower_or_equal":
        return max(values)
    if metric.relation == "greater_or_equal":
        return min(values)
    return sum(values) / len(values)


def _verdict(metric: QosMetric, value: float | None) -> dict[str, Any]:
    met: bool | None = None
    if value is not None and metric.target is not None:
        if metric.relation == "lower_or_equal":
            met = value <= metric.target
        elif metric.relation == "greater_or_equal":
            met = value >= metric.target
        elif metric.relation == "equal":
            met = value == metric.target
    return {"value": value, "target": metric.target, "relation": metric.relation, "met": met}


def _sum(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) if present else None


def _regex_quote(text: str) -> str:
    """A literal for a PromQL regex inside a double-quoted string (RE2: escape the metachars,
    then the backslashes for the string)."""
    return re.sub(r"([.+*?()|\[\]{}^$\\])", r"\\\\\1", text)
