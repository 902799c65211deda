"""Per-app and per-component performance from Prometheus answers: workloads mapped back to their
components by name, replicas summed, QoS metrics chosen by label and judged against the target,
missing samples None (never 0), an unreachable Prometheus a 503, an unknown app a 404."""

from __future__ import annotations

from typing import Any

import pytest

from controller.api.ports import PortError
from controller.kube.errors import NotFound
from controller.kube.resources import Resource
from controller.telemetry.performance import CPU_SERIES, MEMORY_SERIES, PrometheusPerformance
from controller.telemetry.prometheus import MetricsUnavailable, Series

APP = {
    "apiVersion": "mlsysops.eu/v1",
    "kind": "MLSysOpsApp",
    "metadata": {"name": "shop", "namespace": "default"},
    "name": "shop",
    "components": [
        {
            "metadata": {"name": "web"},
            "containers": [{"image": "busybox", "command": ["sh"]}],
            "qos_metrics": [
                {"application_metric_id": "latency_ms", "target": 30, "relation": "lower_or_equal"},
                {"application_metric_id": "not a metric", "target": 1, "relation": "equal"},
            ],
        },
        {
            "metadata": {"name": "web-api"},
            "containers": [{"image": "busybox", "command": ["sh"]}],
            "qos_metrics": [
                {"application_metric_id": "throughput", "target": 100, "relation": "greater_or_equal"}
            ],
        },
        {"metadata": {"name": "db"}, "containers": [{"image": "busybox", "command": ["sh"]}]},
    ],
}


class Store:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

    def get(self, res: Resource, namespace: str, name: str) -> dict[str, Any]:
        if (namespace, name) != ("default", "shop") or name not in self.objects:
            raise NotFound(f"{res.plural}/{name}")
        return self.objects[name]


class Prometheus:
    url = "http://127.0.0.1:9090"

    def __init__(self, answers: dict[str, list[Series]], down: bool = False) -> None:
        self.answers = answers
        self.down = down
        self.asked: list[str] = []

    def query(self, promql: str) -> list[Series]:
        self.asked.append(promql)
        if self.down:
            raise MetricsUnavailable("connection refused")
        for prefix, series in self.answers.items():
            if promql.startswith(prefix):
                return series
        return []


def series(metric: str, value: float, **labels: str) -> Series:
    return Series({"__name__": metric, **labels}, value)


def performance(answers: dict[str, list[Series]], **kwargs: Any) -> PrometheusPerformance:
    return PrometheusPerformance(Prometheus(answers, **kwargs), Store({"shop": APP}))  # type: ignore[arg-type]


ANSWERS = {
    "rate(": [
        Series({"workload": "shop.web.0"}, 0.25),
        Series({"workload": "shop.web.1"}, 0.5),
        Series({"workload": "shop.web-api.0"}, 0.125),
        Series({"workload": "shopping.web.0"}, 9.0),  # another app's (a prefix that also matches)
    ],
    CPU_SERIES: [Series({"workload": "shop.web.0"}, 10.0), Series({"workload": "shop.web.1"}, 20.0)],
    MEMORY_SERIES: [
        Series({"workload": "shop.web.0"}, 1000.0),
        Series({"workload": "shop.web.1"}, 2000.0),
        Series({"workload": "shop.db.0"}, 500.0),
    ],
    "{__name__": [
        series("latency_ms", 20.0, component="web"),
        series("latency_ms", 45.0, component="web"),
        series("latency_ms", 99.0, component="db"),  # another component's
        series("throughput", 150.0),
        series("throughput", float("nan")),
    ],
}


def test_components_sum_their_replicas_and_the_app_sums_its_components() -> None:
    got = performance(ANSWERS).app_performance("default", "shop")
    assert got["components"]["web"] == {
        "cpu_cores": 0.75,
        "cpu_seconds_total": 30.0,
        "memory_bytes": 3000.0,
        "latency_ms": 45.0,  # lower_or_equal: the worst is the highest
        "not a metric": None,  # not a Prometheus name: never queried
    }
    assert got["components"]["web-api"] == {
        "cpu_cores": 0.125,
        "cpu_seconds_total": None,  # no sample yet: None, not 0
        "memory_bytes": None,
        "throughput": 150.0,
    }
    assert got["components"]["db"] == {"cpu_cores": None, "cpu_seconds_total": None, "memory_bytes": 500.0}
    assert got["app"] == {"cpu_cores": 0.875, "cpu_seconds_total": 30.0, "memory_bytes": 3500.0}
    assert got["source"] == "http://127.0.0.1:9090"


def test_qos_verdicts_say_whether_each_target_is_met() -> None:
    qos = performance(ANSWERS).app_performance("default", "shop")["qos"]
    assert qos["web"]["latency_ms"] == {
        "value": 45.0,
        "target": 30,
        "relation": "lower_or_equal",
        "met": False,
    }
    assert qos["web"]["not a metric"]["met"] is None
    assert qos["web-api"]["throughput"]["met"] is True


def test_the_queries_select_the_apps_workloads_by_escaped_prefix_and_ask_once_per_metric() -> None:
    source = performance(ANSWERS)
    source.app_performance("default", "shop")
    asked = source._prometheus.asked  # type: ignore[attr-defined]
    assert asked[0] == f'rate({CPU_SERIES}{{workload=~"shop\\\\..*"}}[1m])'
    assert asked[3] == '{__name__=~"latency_ms|throughput"}'
    assert len(asked) == 4


def test_an_unreachable_prometheus_is_a_503_and_an_unknown_app_a_404() -> None:
    with pytest.raises(PortError) as down:
        performance(ANSWERS, down=True).app_performance("default", "shop")
    assert down.value.status == 503 and "connection refused" in down.value.message
    with pytest.raises(PortError) as unknown:
        performance(ANSWERS).app_performance("default", "nope")
    assert unknown.value.status == 404


def test_a_bad_rate_window_is_refused_up_front() -> None:
    with pytest.raises(ValueError, match="rate_window"):
        PrometheusPerformance(Prometheus({}), Store({}), rate_window="1 minute")  # type: ignore[arg-type]
