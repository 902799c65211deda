"""`POST /api/v1/models/{name}/train` with a `prometheus` body: trained on a real Prometheus
(Debian's, private) holding the recorded QoS grid as telemetry, lineage and tags naming the
Prometheus and the window; only the API's own Prometheus may be read (403 otherwise), an
unreachable one is 503 and an empty window 422, each leaving the registry as it was. The `ml`
config block builds the retraining loop (not started), whose records `/api/v1/models/-/retrain`
lists; a bad block is refused by key."""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from test_api_daemon import run_daemon, stop, wait_listening

from controller.api.models import ModelsConfig, models_config
from controller.api.server import ListenerRefused, ServeConfig, ml_config
from controller.api.tokens import TokenStore
from mlconnector.features import DATASET_PATH, load_dataset
from mlconnector.registry import MlflowRegistry
from mlsysops.testing import wait_for

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "mlconnector" / "retrain"))
from backfill import QUERIES, Telemetry, needs_prometheus, serve

pytestmark = needs_prometheus
NAME = "latency_p95_ms"


@pytest.fixture(scope="module")
def telemetry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Telemetry]:
    start = float(int(time.time()) // 60 * 60 - 4 * 3600)  # the dataset spans 2.2 h at 30 s a row
    with serve(tmp_path_factory.mktemp("prometheus"), load_dataset(DATASET_PATH), start) as running:
        yield running


@pytest.fixture
def registry(tmp_path: Path) -> MlflowRegistry:
    return MlflowRegistry.embedded(tmp_path / "models")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def body(telemetry: Telemetry, **over: object) -> dict:
    spec = {"window": f"{int(telemetry.end - telemetry.start)}s", "queries": QUERIES, "end": telemetry.end}
    return {"reason": "from telemetry", "prometheus": {**spec, **over}}


def test_training_from_the_apis_prometheus(make_client, bearer, registry, telemetry):
    down = f"http://127.0.0.1:{free_port()}"
    api = make_client(models=registry)
    api.app.state.ml = ModelsConfig(frozenset({telemetry.url, down}))
    op = bearer["operator"]

    r = api.post(f"/api/v1/models/{NAME}/train", json=body(telemetry, url=telemetry.url), headers=op)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["promoted"] and out["version"]["version"] == "1"
    lineage = out["version"]["lineage"]
    assert lineage["source"] == f"prometheus:{telemetry.url}"
    assert lineage["window_start"] == telemetry.start and lineage["rows"] == round(0.75 * len(telemetry.rows))
    assert out["version"]["tags"]["retrain_reason"] == "from telemetry"
    assert json.loads(out["version"]["tags"]["prometheus_queries"]) == QUERIES

    before = [v.version for v in registry.versions(NAME)]
    elsewhere = body(telemetry, url="http://169.254.169.254")
    r = api.post(f"/api/v1/models/{NAME}/train", json=elsewhere, headers=op)
    assert r.status_code == 403 and "reads only its own Prometheus" in r.text, r.text
    r = api.post(f"/api/v1/models/{NAME}/train", json=body(telemetry, url=down), headers=op)
    assert r.status_code == 503 and "cannot connect" in r.text, r.text
    empty = body(telemetry, url=telemetry.url, queries={**QUERIES, "cpus": "absent_metric"})
    r = api.post(f"/api/v1/models/{NAME}/train", json=empty, headers=op)
    assert r.status_code == 422 and "column cpus" in r.text, r.text
    r = api.post(f"/api/v1/models/{NAME}/train", json=body(telemetry, url=telemetry.url, window="soon"),
                 headers=op)
    assert r.status_code == 422 and "prometheus.window" in r.text, r.text
    r = api.post(f"/api/v1/models/{NAME}/train", json=body(telemetry, url=telemetry.url),
                 headers=bearer["viewer"])
    assert r.status_code == 403
    assert [v.version for v in registry.versions(NAME)] == before


def test_without_a_url_the_only_allowed_prometheus_is_read(make_client, bearer, registry, telemetry):
    api = make_client(models=registry)
    r = api.post(f"/api/v1/models/{NAME}/train", json=body(telemetry), headers=bearer["operator"])
    assert r.status_code == 422 and "prometheus.url" in r.text  # the API has no Prometheus
    api.app.state.ml = ModelsConfig(frozenset({telemetry.url}))
    r = api.post(f"/api/v1/models/{NAME}/train", json=body(telemetry), headers=bearer["operator"])
    assert r.status_code == 200, r.text
    assert r.json()["version"]["tags"]["prometheus_url"] == telemetry.url


def test_the_ml_block_builds_the_retrain_loop_and_its_records_are_listed(make_client, bearer, registry,
                                                                          telemetry):
    block = {"retrain": {"interval": "1m", "models": [
        {"name": NAME, "lookback": "1h", "schedule": "off", "min_gap": "10m", "queries": QUERIES}]}}
    config = models_config(block, registry, telemetry.url)
    assert config.prometheus_urls == frozenset({telemetry.url})
    assert config.runner is not None and not config.runner.running  # built, not started
    api = make_client(models=registry)
    assert api.get("/api/v1/models/-/retrain", headers=bearer["viewer"]).json() == {
        "running": False, "records": []}
    api.app.state.ml = config
    # the last hour holds no telemetry (it ended hours ago): a failed check, recorded
    [record] = config.retrainer.run_once(time.time())
    assert record.outcome == "failed" and "matched no samples" in record.reason
    listed = api.get(f"/api/v1/models/-/retrain?model={NAME}", headers=bearer["viewer"]).json()
    assert listed["running"] and [r["outcome"] for r in listed["records"]] == ["failed"]
    # within the telemetry: no model yet, so the loop trains the first version from Prometheus
    [first] = config.retrainer.run_once(telemetry.end)
    assert first.outcome == "promoted" and first.trigger == "no model trained yet", first
    assert registry.get(NAME, "champion").lineage.source == f"prometheus:{telemetry.url}"


def test_a_bad_ml_block_is_refused_by_key(registry):
    bad = [
        ({"retrian": {}}, "unknown key"),
        ({"retrain": {"models": []}}, "ml.retrain: expected"),
        ({"retrain": {"models": [{"name": NAME, "queries": QUERIES, "lookback": "a while"}]}},
         "models[0].lookback"),
        ({"retrain": {"models": [{"name": NAME, "queries": {}}]}}, "no queries"),
        ({"retrain": {"models": [{"name": NAME, "queries": QUERIES, "qeuries": 1}]}}, "unknown key"),
    ]
    for block, message in bad:
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            models_config(block, registry, "http://127.0.0.1:9090")
    with pytest.raises(ValueError, match="prometheus: no Prometheus"):
        models_config({"retrain": {"models": [{"name": NAME, "queries": QUERIES}]}}, registry, None)

    class App:
        class state:
            class context:
                models = registry

    with pytest.raises(ListenerRefused, match="unknown key"):
        ml_config(ServeConfig(ml={"retrian": {}}), App, None)  # type: ignore[arg-type]


def test_the_daemon_runs_the_retrain_loop_from_its_ml_block(tmp_path_factory, tmp_path):
    """The API daemon (a real process) with `prometheus_url` and an `ml.retrain` block: its loop
    starts with the server, trains the first version from the last hour of telemetry, and the
    records and the version (lineage: the Prometheus) are served; SIGTERM stops it all."""
    start = float(int(time.time()) - 96 * 30 - 60)  # the grid's 96 windows ended a minute ago
    with serve(tmp_path_factory.mktemp("recent"), load_dataset(DATASET_PATH), start) as recent:
        viewer, _ = TokenStore(tmp_path / "tokens.json").create("viewer", name="v")
        config = tmp_path / "api.yaml"
        config.write_text(yaml.safe_dump({
            "prometheus_url": recent.url,
            "model_registry": str(tmp_path / "models"),
            "ml": {"retrain": {"interval": "2s", "models": [
                {"name": NAME, "lookback": "1h", "schedule": "off", "queries": QUERIES}]}},
        }))  # fmt: skip
        port = free_port()
        proc = run_daemon(tmp_path, "--config", str(config), "--listen", f"127.0.0.1:{port}")
        try:
            wait_listening(port, proc)
            url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {viewer}"}

            def trained() -> bool:
                records = httpx.get(f"{url}/api/v1/models/-/retrain", headers=auth).json()["records"]
                return any(r["outcome"] == "promoted" for r in records)

            wait_for(trained, what="the loop's first training", timeout=90)
            listed = httpx.get(f"{url}/api/v1/models/-/retrain", headers=auth).json()
            assert listed["running"] and listed["records"][0]["trigger"] == "no model trained yet"
            shown = httpx.get(f"{url}/api/v1/models/{NAME}", headers=auth).json()
            assert shown["champion"] == "1"
            assert shown["history"][0]["lineage"]["source"] == f"prometheus:{recent.url}"
            assert shown["history"][0]["tags"]["retrain_loop"] == "1"
        finally:
            stop(proc)
        assert proc.returncode == 0, proc.stderr.read().decode() if proc.stderr else ""
