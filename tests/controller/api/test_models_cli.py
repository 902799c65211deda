"""`mlsysops models ...` through a live REST API (uvicorn on loopback) and directly on a registry
(`--registry DIR`), both on a real MLflow registry; and `apps explain` showing a decision's model
explanation (attributions by magnitude, base value, prediction, model ref) or its fallback."""

from __future__ import annotations

import json

import pytest
from api_harness import LiveApi
from click.testing import CliRunner
from test_models_api import ROW, write_grid

from controller.api.app import create_app
from controller.api.context import ApiContext, ApiSettings
from controller.cli import apps
from controller.cli_output import render_explanation
from controller.kube import resources as R
from controller.models_cli import models
from mlconnector.registry import MlflowRegistry

NAME = "latency_p95_ms"
ROW_ARGS = [f"{k}={v}" for k, v in ROW.items()]


@pytest.fixture
def registry(tmp_path):
    return MlflowRegistry.embedded(tmp_path / "models")


@pytest.fixture
def live(store, tokens, registry, tmp_path, monkeypatch):
    (tmp_path / "datasets").mkdir()
    write_grid(tmp_path / "datasets" / "grid.csv")
    write_grid(tmp_path / "datasets" / "slow.csv", seed=1, slow=1.6)
    monkeypatch.setenv("MLSYSOPS_API_CONFIG", str(tmp_path / "none.yaml"))
    settings = ApiSettings(model_datasets=tmp_path / "datasets", model_registry_uri=str(tmp_path / "models"))
    with LiveApi(create_app(ApiContext(store, tokens, settings, models=registry))) as server:
        yield server


def run(args, token=None, env=None):
    environment = {"MLSYSOPS_API_TOKEN": token} if token else {}
    return CliRunner().invoke(models, args, env={**environment, **(env or {})})


def test_the_commands_through_the_api(live, tokens, registry):
    operator, _ = tokens.create("operator")
    api = ["--api", live.url]
    r = run([*api, "train", NAME, "--dataset", "grid.csv", "--reason", "cli test"], operator)
    assert r.exit_code == 0, r.output
    assert f"model {NAME}: version 1 (champion): promoted" in r.output
    r = run([*api, "train", NAME, "--dataset", "slow.csv", "-o", "json"], operator)
    assert r.exit_code == 0 and json.loads(r.output)["version"]["version"] == "2", r.output

    r = run([*api, "list"], operator)
    assert r.exit_code == 0, r.output
    header, line = r.output.splitlines()
    assert header.split()[:4] == ["NAME", "TARGET", "VERSIONS", "CHAMPION"]
    assert line.split()[:3] == [NAME, NAME, "2"]
    r = run([*api, "show", NAME], operator)
    assert r.exit_code == 0 and "cpu_quota_cores [cores]" in r.output and "cli test" in r.output, r.output

    champion = registry.get(NAME, "champion").version
    other = "1" if champion == "2" else "2"
    r = run([*api, "promote", NAME, other], operator)
    assert r.exit_code == 0 and f"version {other} (champion" in r.output, r.output
    assert registry.get(NAME, "champion").version == other
    r = run([*api, "rollback", NAME], operator)
    assert r.exit_code == 0 and registry.get(NAME, "champion").version == champion, r.output

    r = run([*api, "explain", NAME, *ROW_ARGS], operator)
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"model {NAME}/{champion} (")
    assert "base" in r.output.splitlines()[0] and "offered_rps" in r.output
    r = run([*api, "explain", NAME, *ROW_ARGS, "-o", "json"], operator)
    e = json.loads(r.output)
    shown = [
        line.split()[0] for line in run([*api, "explain", NAME, *ROW_ARGS], operator).output.splitlines()[2:]
    ]
    assert shown == sorted(e["attributions"], key=lambda k: -abs(e["attributions"][k]))


def test_errors_are_one_line(live, tokens, registry):
    viewer, _ = tokens.create("viewer")
    operator, _ = tokens.create("operator")
    api = ["--api", live.url]
    r = run([*api, "train", NAME], viewer)
    assert r.exit_code == 1 and "403" in r.output and "needs operator" in r.output
    r = run([*api, "show", "nope"], viewer)
    assert r.exit_code == 1 and "404" in r.output and "no model 'nope'" in r.output
    r = run([*api, "train", NAME, "--dataset", "grid.csv"], operator)
    assert r.exit_code == 0
    r = run([*api, "rollback", NAME], operator)
    assert r.exit_code == 1 and "409" in r.output
    r = run([*api, "explain", NAME, "cpus=two"], viewer)
    assert r.exit_code == 2 and "FEATURE=NUMBER" in r.output
    r = run([*api, "explain", NAME, "cpus=2"], viewer)
    assert r.exit_code == 1 and "422" in r.output and "missing feature(s)" in r.output
    r = run(["list"])
    assert r.exit_code == 2 and "--api URL" in r.output


def test_local_mode_on_a_registry_directory(tmp_path):
    data = write_grid(tmp_path / "grid.csv")
    reg = ["--registry", str(tmp_path / "models")]
    r = run([*reg, "train", NAME, "--dataset", str(data)])
    assert r.exit_code == 0 and "promoted" in r.output, r.output
    r = run([*reg, "list", "-o", "json"])
    assert r.exit_code == 0 and json.loads(r.output)[0]["champion"] == "1"
    r = run([*reg, "rollback", NAME])
    assert r.exit_code == 1 and "model registry" in r.output
    r = run([*reg, "explain", NAME, *ROW_ARGS, "-o", "json"])
    assert r.exit_code == 0 and json.loads(r.output)["model"] == f"{NAME}/1"


EXPLAINED = {
    "component": "svc",
    "chosen": "edge-1",
    "reason": "learned: 1 core on edge-1",
    "candidates": [],
    "rejectedCounts": {},
    "model": {
        "model": f"{NAME}/3",
        "prediction": 42.0,
        "base_value": 50.0,
        "method": "shap",
        "attributions": {"cpu_quota_cores": -10.0, "offered_rps": 3.0, "cpus": -1.0, "runtime_gvisor": 0.0},
        "inputs": {"cpu_quota_cores": 1.0, "offered_rps": 120.0, "cpus": 2.0, "runtime_gvisor": 0.0},
        "target": 50.0,
        "relation": "lower_or_equal",
        "margin": 4.2,
    },
}
FALLBACK = {
    "component": "db",
    "chosen": "edge-2",
    "reason": "heuristic",
    "candidates": [],
    "model": {"fallback": "no champion for latency_p95_ms"},
}


def test_apps_explain_renders_the_model_explanation_and_the_fallback():
    text = render_explanation([EXPLAINED, FALLBACK])
    lines = text.splitlines()
    head = next(line for line in lines if "model latency_p95_ms/3" in line)
    assert "predicted 42 (target lower_or_equal 50, margin 4.2) = base 50 + attributions" in head
    at = lines.index(head)
    assert [line.split()[0] for line in lines[at + 2 : at + 6]] == [
        "cpu_quota_cores",
        "offered_rps",
        "cpus",
        "runtime_gvisor",
    ]
    assert "-10" in lines[at + 2] and "120" in lines[at + 3]
    assert "model: none used, the heuristic decided: no champion for latency_p95_ms" in text


def test_apps_explain_through_the_api_shows_the_stored_model_explanation(live, tokens, store):
    viewer, _ = tokens.create("viewer")
    app = {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": "svc-app", "namespace": "default"},
        "name": "svc-app",
        "components": [{"metadata": {"name": "svc"}, "containers": [{"image": "example/svc:1"}]}],
    }
    written = store.apply(app, field_manager="test")
    store.replace_status(R.APP, {**written, "status": {"phase": "Planned", "explanation": [EXPLAINED]}})
    stored = store.get(R.APP, "default", "svc-app")
    assert stored["status"]["explanation"][0]["model"]["model"] == f"{NAME}/3"
    r = CliRunner().invoke(
        apps, ["explain", "svc-app", "--api", live.url], env={"MLSYSOPS_API_TOKEN": viewer}
    )
    assert r.exit_code == 0, r.output
    assert f"model {NAME}/3 (shap): predicted 42" in r.output


def test_a_plans_explanation_carries_the_decisions_model_field():
    from controller.plan import explanation
    from controller.policies.base import Decision, Plan

    decisions = (
        Decision("svc", "edge-1", None, "learned", model=EXPLAINED["model"]),
        Decision("db", "edge-2", None, "heuristic"),
    )
    rows = explanation(Plan("a", "default", "qosLearnedPlacer", decisions, ("svc", "db")))
    assert rows[0]["model"] == EXPLAINED["model"] and "model" not in rows[1]
    assert f"model {NAME}/3 (shap)" in render_explanation(rows)


def test_the_daemon_takes_the_registry_and_datasets_options(tmp_path):
    from controller.api.daemon import load_config, parser
    from controller.api.server import ServeConfig, model_registry

    args = [
        "--model-registry",
        str(tmp_path / "reg"),
        "--model-datasets",
        str(tmp_path),
        "--model-server-image",
        "x/y:1",
    ]
    cfg = load_config(None, parser().parse_args(args))
    assert (cfg.model_registry, cfg.model_datasets, cfg.model_server_image) == (
        str(tmp_path / "reg"),
        tmp_path,
        "x/y:1",
    )
    assert ServeConfig().model_registry == "/var/lib/mlsysops/api/models"
    registry = model_registry(cfg.model_registry)
    assert isinstance(registry, MlflowRegistry) and registry.models() == []  # opened on first use
    assert (tmp_path / "reg" / "mlflow.db").is_file()
