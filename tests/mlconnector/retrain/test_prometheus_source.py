"""Training windows from a real Prometheus (Debian's, private, loopback) holding the recorded
QoS grid as telemetry (backfilled with promtool, see backfill.py): the rows read back are the
recorded ones, `mlsysops models train --from-prometheus` trains on them with a lineage naming the
Prometheus and the window, and an unreachable, empty or malformed source is a clear error."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from backfill import QUERIES, ROW_S, Telemetry, needs_prometheus, serve

from controller.models_cli import models
from controller.telemetry.windows import PrometheusRangeSource, prometheus_windows
from mlconnector.features import DATASET_PATH, load_dataset
from mlconnector.prometheus import (
    EmptyWindow,
    PrometheusWindows,
    SourceError,
    SourceUnavailable,
)
from mlconnector.registry import MlflowRegistry

pytestmark = needs_prometheus
NAME = "latency_p95_ms"


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Telemetry]:
    start = float(int(time.time()) // 60 * 60 - 4 * 3600)  # four hours ago, on a minute
    with serve(tmp_path_factory.mktemp("prometheus"), load_dataset(DATASET_PATH), start) as running:
        yield running


def windows(url: str, **kw: object) -> PrometheusWindows:
    return prometheus_windows(url, kw.pop("queries", QUERIES), row_window=ROW_S,  # type: ignore[arg-type]
                              step=5.0, **kw)  # type: ignore[arg-type]


@contextlib.contextmanager
def answering(text: str, status: int = 200) -> Iterator[str]:
    """A loopback HTTP server answering every GET with `text` (a proxy or another service where
    a Prometheus was expected)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_rows_read_back_are_the_recorded_windows(telemetry: Telemetry) -> None:
    rows = windows(telemetry.url, constants={"work_ms": 6.3}).window(telemetry.start, telemetry.end)
    assert rows.source == f"prometheus:{telemetry.url}" and len(rows) == len(telemetry.rows)
    np.testing.assert_array_equal(rows.column("window_start"), telemetry.rows.column("window_start"))
    for column in QUERIES:  # offered_rps is the sum of two instances' shares
        np.testing.assert_allclose(rows.column(column), telemetry.rows.column(column), rtol=1e-12)
    assert set(rows.column("work_ms")) == {6.3}
    # a span inside the data: only its whole windows
    part = windows(telemetry.url).window(telemetry.start + 10 * ROW_S, telemetry.start + 20 * ROW_S + 7)
    assert len(part) == 10 and part.window_start == telemetry.start + 10 * ROW_S


def test_an_unreachable_prometheus_is_source_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(SourceUnavailable, match=f"prometheus at {url}: cannot connect: .*refused"):
        windows(url).window(time.time() - 600, time.time())


def test_a_query_without_series_names_its_column(telemetry: Telemetry) -> None:
    queries = {**QUERIES, "cpus": 'qos_cpus{component="nope"}'}
    with pytest.raises(EmptyWindow, match=r"column cpus: query 'qos_cpus\{component=\"nope\"\}' matched no"):
        windows(telemetry.url, queries=queries).window(telemetry.start, telemetry.end)
    with pytest.raises(EmptyWindow, match="matched no samples"):  # before the telemetry began
        windows(telemetry.url).window(telemetry.start - 7200, telemetry.start - 3600)
    with pytest.raises(EmptyWindow, match="shorter than one row window"):
        windows(telemetry.url).window(telemetry.start, telemetry.start + 10)


def test_a_promql_error_and_malformed_answers_are_source_errors(telemetry: Telemetry) -> None:
    bad = {**QUERIES, "cpus": "sum(("}
    with pytest.raises(SourceError, match="parse error") as caught:
        windows(telemetry.url, queries=bad).window(telemetry.start, telemetry.end)
    assert not isinstance(caught.value, SourceUnavailable)

    vector = {"status": "success", "data": {"resultType": "vector", "result": []}}
    sample = {"status": "success", "data": {"resultType": "matrix",
                                            "result": [{"metric": {}, "values": [[1, "x"]]}]}}
    with answering(json.dumps(vector)) as url:
        with pytest.raises(SourceError, match="not a range vector"):
            PrometheusRangeSource(url).query_range("up", 0, 60, 5)
        with pytest.raises(SourceError, match="more than Prometheus' 11000 points"):
            PrometheusRangeSource(url).query_range("up", 0, 86400, 1)
    with answering(json.dumps(sample)) as url, pytest.raises(SourceError, match="malformed sample"):
        PrometheusRangeSource(url).query_range("up", 0, 60, 5)
    bad_gateway = pytest.raises(SourceUnavailable, match="HTTP 502, not a Prometheus answer")
    with answering("<html>bad gateway</html>", 502) as url, bad_gateway:
        PrometheusRangeSource(url).query_range("up", 0, 60, 5)
    with pytest.raises(SourceError, match="expected http"):
        PrometheusRangeSource("127.0.0.1:9090")


def test_models_train_from_prometheus_names_source_and_window(telemetry: Telemetry, tmp_path: Path) -> None:
    registry_dir = tmp_path / "models"
    queries = [f"--query={c}={q}" for c, q in QUERIES.items()]
    end = telemetry.end
    window_s = int(end - telemetry.start)
    args = ["--registry", str(registry_dir), "train", NAME, "--from-prometheus", telemetry.url,
            "--window", f"{window_s}s", *queries, "-o", "json"]
    # through the operations the API and the CLI share, with the window's end given (`end`)
    from controller.api import models as ops

    spec = ops.prometheus_spec(
        {"url": telemetry.url, "window": f"{window_s}s", "queries": QUERIES, "end": end}
    )
    out = ops.train(MlflowRegistry.embedded(registry_dir), NAME, prometheus=spec, reason="test")
    assert out["promoted"] and out["version"]["version"] == "1"
    lineage = out["version"]["lineage"]
    assert lineage["source"] == f"prometheus:{telemetry.url}"
    older = round(0.75 * len(telemetry.rows))  # the hold-out is the recent 1/4
    assert lineage["window_start"] == telemetry.start and lineage["rows"] == older
    tags = out["version"]["tags"]
    assert tags["prometheus_url"] == telemetry.url and tags["prometheus_window"] == f"{window_s}s"
    assert json.loads(tags["prometheus_queries"]) == QUERIES

    # through the CLI (the window ends now): the last 30 min hold no telemetry, a one-line error;
    # the last 5 h hold all of it
    r = CliRunner().invoke(models, [*args[:-2], "--window", "30m"])
    assert r.exit_code == 1 and "matched no samples" in r.output, r.output
    long = [a if a != f"{window_s}s" else "5h" for a in args]
    r = CliRunner().invoke(models, long)
    assert r.exit_code == 0, r.output
    second = json.loads(r.output)
    assert second["version"]["version"] == "2"
    assert second["version"]["lineage"]["source"] == f"prometheus:{telemetry.url}"
    assert second["version"]["tags"]["prometheus_window"] == "5h"
    r = CliRunner().invoke(models, ["--registry", str(registry_dir), "train", NAME, "--query", "cpus=up"])
    assert r.exit_code == 2 and "--query and --set need --from-prometheus URL" in r.output


def test_models_retrain_loop_once_checks_and_trains(telemetry: Telemetry, tmp_path: Path) -> None:
    base = ["--registry", str(tmp_path / "models"), "retrain-loop", NAME, "--from-prometheus", telemetry.url,
            *[f"--query={c}={q}" for c, q in QUERIES.items()], "--schedule", "off", "--once", "-o", "json"]
    r = CliRunner().invoke(models, [*base, "--lookback", "1h"])  # the last hour holds no telemetry
    assert r.exit_code == 0, r.output
    [failed] = json.loads(r.output)
    assert failed["outcome"] == "failed" and "matched no samples" in failed["reason"]
    r = CliRunner().invoke(models, [*base, "--lookback", "5h"])
    assert r.exit_code == 0, r.output
    [trained] = json.loads(r.output)
    assert trained["outcome"] == "promoted" and trained["trigger"] == "no model trained yet", trained
    champion = MlflowRegistry.embedded(tmp_path / "models").get(NAME, "champion")
    assert champion.lineage is not None and champion.lineage.source == f"prometheus:{telemetry.url}"
    r = CliRunner().invoke(models, ["--registry", str(tmp_path / "models"), "retrain-log"])
    assert r.exit_code == 2 and "give --api URL" in r.output


def test_models_retrain_loop_refuses_a_url_that_is_not_http(tmp_path: Path) -> None:
    r = CliRunner().invoke(models, ["--registry", str(tmp_path / "models"), "retrain-loop", NAME,
                                    "--from-prometheus", "127.0.0.1:9090", "--query=cpus=up", "--once"])
    assert r.exit_code == 2 and "expected http://HOST:PORT" in r.output, r.output
