"""The generic model server (mlconnector.serve) over a real MLflow registry (embedded in a tmp dir):
what it serves equals the registry's model, it follows the champion alias across a promote and a
rollback, bad input is refused with a status and the field, and `python -m mlconnector.serve`
runs as the deployed component does."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from grid import write_grid

from mlconnector import features, training
from mlconnector.registry import MlflowRegistry
from mlconnector.serve import ModelServer, ModelService, follow

NAME = "latency_p95_ms"
ROWS = [
    {"cpu_quota_cores": 1.0, "cpus": 2, "runtime_gvisor": 0, "offered_rps": 120.0},
    {"cpu_quota_cores": 0.5, "cpus": 1, "runtime_gvisor": 1, "offered_rps": 60.0},
]


def call(url: str, body: Any = None, raw: bytes | None = None) -> tuple[int, Any]:
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    request = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json"}, method="GET" if data is None else "POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[MlflowRegistry, Path]:
    """Two versions: 1 on one regime, 2 on a slower one (so they predict differently)."""
    root = tmp_path_factory.mktemp("serve")
    registry = MlflowRegistry.embedded(root / "models")
    for i, slow in enumerate((1.0, 1.8)):
        data = features.load_dataset(write_grid(root / f"grid{i}.csv", seed=i, slow=slow))
        version = training.fit(data, training.LATENCY_SIGNATURE).estimator
        v = registry.register(
            NAME, version, training.LATENCY_SIGNATURE, metrics={"mape": 0.1}, lineage=data.lineage()
        )
        if i == 0:
            registry.promote(NAME, v.version)
    return registry, root / "models"


@pytest.fixture
def server(trained):
    registry, _ = trained
    registry.promote(NAME, "1")
    service = ModelService(follow(registry, NAME, refresh_s=0.2), NAME, "champion")
    srv = ModelServer(service, "127.0.0.1", 0)
    srv.start()
    yield f"http://127.0.0.1:{srv.port}", registry
    srv.stop()


def test_predictions_and_explanations_are_the_registry_models(server):
    url, registry = server
    assert call(url + "/healthz") == (200, {"status": "ok", "model": f"{NAME}/1"})
    status, model = call(url + "/v1/model")
    assert status == 200 and model["version"] == "1" and model["serving"] == "champion"
    assert {f["name"]: f["unit"] for f in model["signature"]["features"]}["offered_rps"] == "req/s"
    status, answer = call(url + "/v1/predict", {"rows": ROWS})
    assert status == 200 and answer["model"] == f"{NAME}/1"
    assert answer["predictions"] == pytest.approx(registry.load(NAME, "1").predict(ROWS), rel=1e-9)
    status, e = call(url + "/v1/explain", {"row": ROWS[0]})
    assert status == 200 and e["model"] == f"{NAME}/1" and set(e["attributions"]) == set(ROWS[0])
    assert e["prediction"] == pytest.approx(answer["predictions"][0], rel=1e-6)
    if e["method"] == "shap":
        assert e["base_value"] + sum(e["attributions"].values()) == pytest.approx(e["prediction"], rel=1e-3)


def _serving(url: str, version: str, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        status, answer = call(url + "/v1/predict", {"rows": ROWS})
        if status == 200 and answer["model"] == f"{NAME}/{version}":
            return dict(answer)
        assert time.monotonic() < deadline, f"still serving {answer}"
        time.sleep(0.1)


def test_it_follows_the_champion_across_promote_and_rollback(server):
    url, registry = server
    before = _serving(url, "1")["predictions"]
    registry.promote(NAME, "2")
    after = _serving(url, "2")["predictions"]
    assert after == pytest.approx(registry.load(NAME, "2").predict(ROWS), rel=1e-9)
    assert after != pytest.approx(before, rel=1e-3)  # a different model is served, not a relabel
    registry.rollback(NAME)
    assert _serving(url, "1")["predictions"] == pytest.approx(before, rel=1e-9)


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/predict", b"{not json", 400, "not JSON"),
        ("/v1/predict", {"rows": []}, 422, "at least one row"),
        ("/v1/predict", {"rows": [{"cpus": 1}]}, 422, "missing feature(s) cpu_quota_cores"),
        ("/v1/predict", {"rows": [{**ROWS[0], "gpu": 1}]}, 422, "unknown feature(s) gpu"),
        ("/v1/predict", {"rows": [{**ROWS[0], "cpus": "2"}]}, 422, "finite number"),
        ("/v1/explain", {"rows": ROWS}, 422, '{"row"'),
        ("/v1/nothing", {}, 404, "no route"),
    ],
)
def test_bad_input_names_what_is_wrong(server, path, body, status, words):
    url, _ = server
    got, answer = call(url + path, raw=body if isinstance(body, bytes) else json.dumps(body).encode())
    assert got == status and words in answer["detail"], answer


def test_an_unknown_model_is_unavailable_not_an_error(trained):
    registry, _ = trained
    srv = ModelServer(ModelService(follow(registry, "nope"), "nope", "champion"), "127.0.0.1", 0)
    srv.start()
    try:
        status, answer = call(f"http://127.0.0.1:{srv.port}/healthz")
        assert status == 503 and "nothing to serve" in answer["detail"]
        status, _ = call(f"http://127.0.0.1:{srv.port}/v1/predict", {"rows": ROWS})
        assert status == 503
    finally:
        srv.stop()


def test_python_m_mlconnector_serve_as_the_component_runs_it(trained, tmp_path):
    registry, directory = trained
    registry.promote(NAME, "1")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlconnector.serve",
            "--registry",
            str(directory),
            "--model",
            NAME,
            "--alias",
            "challenger",
            "--port",
            str(port),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        registry.set_alias(NAME, "challenger", "2")
        deadline = time.monotonic() + 60
        while True:
            try:
                status, health = call(f"http://127.0.0.1:{port}/healthz")
                if status == 200:
                    break
            except urllib.error.URLError:
                pass
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.2)
        assert health["model"] == f"{NAME}/2"
        status, answer = call(f"http://127.0.0.1:{port}/v1/predict", {"rows": ROWS})
        assert status == 200
        assert answer["predictions"] == pytest.approx(registry.load(NAME, "2").predict(ROWS), rel=1e-9)
        proc.terminate()  # how a container runtime stops it: a clean exit, also as PID 1
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
