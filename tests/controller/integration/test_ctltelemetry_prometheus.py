"""The private Prometheus process and its query adapter, on Debian's real `prometheus`: started on
a free loopback port with the generated config, reconfigured live, queried, stopped with nothing
left; bad settings and bad targets refused before anything runs; failures are MetricsUnavailable."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from controller.telemetry.prometheus import (
    MetricsUnavailable,
    PrometheusHttp,
    PrometheusProcess,
    PrometheusSettings,
)
from controller.telemetry.scrape import ScrapeError, ScrapeSettings, ScrapeTarget
from controller.telemetry.targets import agent_scrape_targets
from mlsysops.testing import wait_for

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="Debian prometheus is not installed"
)
FAST = ScrapeSettings(interval_s=1, timeout_s=0.9)


@pytest.fixture
def exporters() -> Iterator[list[str]]:
    """Two /metrics endpoints serving `demo_value` 1 and 2."""
    running = []
    for value in (1, 2):
        registry = CollectorRegistry()
        Gauge("demo_value", "A value to scrape.", registry=registry).set(value)
        running.append(start_http_server(0, addr="127.0.0.1", registry=registry))
    yield [f"http://127.0.0.1:{server.server_address[1]}/metrics" for server, _ in running]
    for server, thread in running:
        server.shutdown()
        server.server_close()
        thread.join(5)


def values(http: PrometheusHttp) -> dict[str, float]:
    return {s.labels["job"]: s.value for s in http.query("demo_value")}


def test_started_reconfigured_queried_and_stopped(tmp_path: Path, exporters: list[str]) -> None:
    process = PrometheusProcess(PrometheusSettings(tmp_path / "prom", scrape=FAST))
    try:
        url = process.start([ScrapeTarget("one", exporters[0])])
        assert url.startswith("http://127.0.0.1:") and process.http is not None
        wait_for(lambda: values(process.http) == {"one": 1.0}, 30, "the first target scraped")  # type: ignore[arg-type]
        process.reconfigure([ScrapeTarget("one", exporters[0]), ScrapeTarget("two", exporters[1])])
        wait_for(lambda: values(process.http) == {"one": 1.0, "two": 2.0}, 30, "the added target")  # type: ignore[arg-type]
        assert {t["labels"]["job"] for t in process.http.active_targets()} == {"one", "two"}
        with pytest.raises(MetricsUnavailable, match="parse error"):
            process.http.query("demo_value{")
        pid = process.pid
    finally:
        process.stop()
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(MetricsUnavailable):
        PrometheusHttp(url, timeout=1).query("up")
    process.stop()  # idempotent


def test_a_bad_target_is_refused_before_anything_runs(tmp_path: Path) -> None:
    process = PrometheusProcess(PrometheusSettings(tmp_path / "prom"))
    with pytest.raises(ScrapeError, match=r"targets\[0\].url"):
        process.start([ScrapeTarget("one", "http://127.0.0.1/metrics")])
    assert process.pid == 0 and not (tmp_path / "prom").exists()


def test_only_a_loopback_listener_is_accepted() -> None:
    with pytest.raises(ValueError, match="loopback"):
        PrometheusProcess(PrometheusSettings(Path("/nonexistent"), listen="0.0.0.0:9090"))


def test_a_prometheus_that_cannot_start_says_why_and_leaves_nothing(
    tmp_path: Path, exporters: list[str]
) -> None:
    first = PrometheusProcess(PrometheusSettings(tmp_path / "a", scrape=FAST))
    try:
        first.start([ScrapeTarget("one", exporters[0])])
        port = first.url.rpartition(":")[2]
        second = PrometheusProcess(
            PrometheusSettings(tmp_path / "b", listen=f"127.0.0.1:{port}", start_timeout_s=20)
        )
        with pytest.raises(RuntimeError, match="address already in use"):
            second.start([ScrapeTarget("one", exporters[0])])
        assert second.pid == 0
    finally:
        first.stop()


def test_an_agent_that_does_not_answer_is_skipped_with_the_reason(tmp_path: Path) -> None:
    found = agent_scrape_targets([f"unix:{tmp_path}/none.sock"], timeout=1)
    assert found.targets == () and "none.sock" in found.skipped[0]


def test_a_prometheus_left_running_by_a_killed_owner_is_ended_before_a_new_one_starts(
    tmp_path: Path, exporters: list[str]
) -> None:
    """The TSDB lock of a leftover would stop the new one: it is ended (only ours is touched)."""
    settings = PrometheusSettings(tmp_path / "prom", scrape=FAST)
    abandoned = PrometheusProcess(settings)
    abandoned.start([ScrapeTarget("one", exporters[0])])
    leftover = abandoned.pid  # its owner "dies": never stopped
    process = PrometheusProcess(settings)
    try:
        process.start([ScrapeTarget("one", exporters[0])])
        assert process.pid != leftover and process.http is not None and process.http.ready()
        assert (tmp_path / "prom" / "prometheus.pid").read_text().strip() == str(process.pid)
        assert (
            abandoned._process is not None and abandoned._process.wait(5) is not None
        )  # ended by the new start
    finally:
        process.stop()
    assert not (tmp_path / "prom" / "prometheus.pid").exists()
