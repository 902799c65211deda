"""A real Prometheus holding the recorded QoS grid as telemetry: each measured window of
mlconnector/data/qos_grid.csv becomes ROW_S seconds of gauge samples (every STEP_S s), written
into a TSDB block with `promtool tsdb create-blocks-from openmetrics` and served by the
controller's own private-Prometheus launcher (controller.telemetry.prometheus.PrometheusProcess).

Backfilling makes the series exact and the test fast (no waiting for scrapes); what is under test
is the range-query path through a real Prometheus: its API, step alignment, staleness, PromQL.
The offered load is split over two instances (`sum` combines them), as a load balancer's
replicas would report it.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from controller.telemetry.prometheus import PrometheusProcess, PrometheusSettings
from mlconnector.features import Dataset

ROW_S, STEP_S = 30, 5
# dataset column -> the series it is recorded in (and the PromQL that reads it back)
QUERIES = {
    "cpu_quota_cores": "qos_cpu_quota_cores",
    "cpus": "qos_cpus",
    "runtime_gvisor": "qos_runtime_gvisor",
    "offered_rps": "sum(qos_offered_rps)",
    "latency_p95_ms": "qos_latency_p95_ms",
}
needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="needs Debian's prometheus (prometheus and promtool)",
)


@dataclass(frozen=True)
class Telemetry:
    url: str
    start: float  # the first row's window start
    rows: Dataset  # the rows as recorded, re-timed at start + ROW_S * i

    @property
    def end(self) -> float:
        return self.start + ROW_S * len(self.rows)


def openmetrics(rows: Dataset, start: float) -> str:
    """The rows as OpenMetrics gauges (seconds timestamps), one family after the other."""
    out: list[str] = []

    def family(name: str, series: Sequence[tuple[str, Sequence[float]]]) -> None:
        out.append(f"# TYPE {name} gauge")
        for labels, values in series:
            for i, value in enumerate(values):
                for k in range(ROW_S // STEP_S):
                    out.append(f"{name}{labels} {value!r} {start + ROW_S * i + STEP_S * k:.0f}")

    for column, promql in QUERIES.items():
        values = [float(v) for v in rows.column(column)]
        if column == "offered_rps":
            family("qos_offered_rps", [('{instance="a"}', [v * 0.25 for v in values]),
                                       ('{instance="b"}', [v * 0.75 for v in values])])
        else:
            family(promql, [('{component="svc"}', values)])
    out.append("# EOF")
    return "\n".join(out) + "\n"


def retimed(rows: Dataset, start: float) -> Dataset:
    cols = {n: rows.columns[n] for n in rows.names}
    cols["window_start"] = [start + ROW_S * i for i in range(len(rows))]
    cols["window_s"] = [float(ROW_S)] * len(rows)
    return Dataset.of(cols, "recorded")


@contextlib.contextmanager
def serve(directory: Path, rows: Dataset, start: float) -> Iterator[Telemetry]:
    """A private Prometheus (loopback, free port) whose TSDB holds `rows` from `start` on."""
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    source = directory / "grid.om"
    source.write_text(openmetrics(rows, start), encoding="utf-8")
    done = subprocess.run(
        ["promtool", "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    process = PrometheusProcess(PrometheusSettings(directory, retention="30d"))
    url = process.start([])
    try:
        yield Telemetry(url, start, retimed(rows, start))
    finally:
        process.stop()
