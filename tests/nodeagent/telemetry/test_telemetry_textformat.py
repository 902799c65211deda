"""Issue 11, footprint: /metrics without client_python's exposition module (its HTTP server,
push client, urllib and email: 3 MiB). The agent's text writer gives exactly what
client_python's generate_latest gives, and its HTTP server answers scrapes as client_python's
did (text by default, OpenMetrics when asked, `?name[]=`), without polling while idle."""

from __future__ import annotations

import socket
import time
import urllib.request
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, Histogram, Info, Summary
from prometheus_client import generate_latest as client_python_text
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.metrics_core import Metric

from mlsysops.testing import wait_for
from nodeagent.host.fs import HostFS
from nodeagent.telemetry import Telemetry
from nodeagent.telemetry.exposition import ExposedView, MetricsServer
from nodeagent.telemetry.textformat import render


class Custom:
    """Families as the agent's collectors build them, timestamps and awkward label values too."""

    def collect(self) -> list[Metric]:
        counter = CounterMetricFamily("t_reads", "Reads.\nSecond line \\ slash.", labels=["path"])
        counter.add_metric(['a"b\\c\nd'], 3, timestamp=1700000000.25)
        counter.add_metric(["plain"], 1e21)
        gauge = GaugeMetricFamily("t_level", "Level.", labels=["cpu"])
        for cpu, value in (("0", float("inf")), ("1", float("-inf")), ("2", float("nan")), ("3", 1234567.0)):
            gauge.add_metric([cpu], value)
        histogram = HistogramMetricFamily("t_wait", "Wait.", buckets=[("0.5", 1), ("+Inf", 2)], sum_value=1.5)
        return [counter, gauge, histogram, Metric("t_untyped", "Untyped.", "unknown")]


class Fixed:
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def full_registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    Counter("t_requests", "Requests.", ["method"], registry=registry).labels("Apply").inc(2)
    Gauge("t_queue", "Queue.", registry=registry).set(7)
    Histogram("t_latency_seconds", "Latency.", ["outcome"], buckets=(0.001, 0.1), registry=registry).labels(
        "ok"
    ).observe(0.01)
    Summary("t_size_bytes", "Size.", registry=registry).observe(12)
    Info("t_build", "Build.", registry=registry).info({"version": "1.2"})
    Enum("t_state", "State.", states=["up", "down"], registry=registry).state("down")
    registry.register(Custom())
    return registry


def test_the_text_writer_is_client_pythons_byte_for_byte() -> None:
    registry = full_registry()
    assert render(registry.collect()) == client_python_text(registry)


def test_production_telemetry_renders_as_client_python_would(tmp_path: Any) -> None:
    registry = CollectorRegistry()
    Counter("t_applies", "Applies.", registry=registry).inc()
    telemetry = Telemetry(registry=registry, fs=HostFS(tmp_path), cgroup_targets=list, settings=[])
    telemetry.start()
    try:
        view = ExposedView(registry, frozenset)
        wait_for(lambda: len(list(view.collect())) > 8)  # the collectors' first samples are in
        families = list(view.collect())
        assert render(families) == client_python_text(Fixed(families))
    finally:
        telemetry.stop()


@pytest.fixture
def server() -> Any:
    registry = full_registry()
    metrics = MetricsServer(ExposedView(registry, frozenset), "127.0.0.1", 0)
    metrics.start()
    try:
        yield metrics, registry
    finally:
        metrics.stop()


def fetch(url: str, **headers: str) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def test_a_scrape_gets_text_or_openmetrics_as_asked(server: Any) -> None:
    metrics, registry = server
    status, ctype, body = fetch(metrics.url)
    text = "text/plain; version=0.0.4; charset=utf-8"
    assert (status, ctype, body) == (200, text, client_python_text(registry))
    accept = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5"
    status, ctype, body = fetch(metrics.url, Accept=accept)
    assert status == 200 and ctype.startswith("application/openmetrics-text; version=1.0.0")
    assert body.endswith(b"# EOF\n") and b"t_requests_total" in body
    status, _, body = fetch(metrics.url + "?name[]=t_queue")
    assert status == 200
    assert body.decode().splitlines() == ["# HELP t_queue Queue.", "# TYPE t_queue gauge", "t_queue 7.0"]


def test_a_scrape_other_than_a_get_or_with_huge_headers_is_refused(server: Any) -> None:
    metrics, _ = server
    request = urllib.request.Request(metrics.url, data=b"x", method="POST")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=5)
    assert refused.value.code == 405
    assert fetch(metrics.url, Cookie="x" * 40_000)[0] == 431
    assert fetch(metrics.url.replace("/metrics", "/favicon.ico"))[:2] == (200, "text/plain")


def test_an_idle_server_does_not_wake_and_stop_ends_it(server: Any) -> None:
    metrics, _ = server
    port = int(metrics.url.rsplit(":", 1)[1].split("/")[0])
    thread = metrics._thread
    tid = thread.native_id

    def switches() -> int:
        with open(f"/proc/self/task/{tid}/status") as status:
            line = next(x for x in status if x.startswith("voluntary_ctxt_switches"))
        return int(line.split()[1])

    time.sleep(0.2)  # the thread has reached its accept()
    before = switches()
    time.sleep(1.2)  # client_python's server polled every 0.5 s
    assert switches() == before
    metrics.stop()
    assert not thread.is_alive()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
