"""`GET /metrics` of the API daemon: the in-process controller's metrics, viewer role, 404 when
the controller runs elsewhere. Against the stand-in API server with the controller wired by the
daemon's own composition root (server.wire): an app no node fits shows one unplaced component,
and the real alert rules, fed the scraped samples by promtool, fire for it and only for it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from controller.api.server import ServeConfig, wire
from controller.api.tokens import TokenStore
from controller.kube import resources as R
from controller.reconcile.metrics import ControllerMetrics
from mlsysops.testing import wait_for

RULES = Path(__file__).resolve().parents[3] / "deploy" / "observability" / "rules" / "mlsysops.rules.yml"
SLOW = 120  # seconds: a loaded 2-core CI machine reconciles slowly (a wait, not a timing check)
NO_NODE_FITS = {
    "apiVersion": "mlsysops.eu/v1",
    "kind": "MLSysOpsApp",
    "metadata": {"name": "riscv", "namespace": "default"},
    "components": [
        {
            "metadata": {"name": "solver"},
            "node_placement": {"labels": ["lidar"]},  # no fixture node has it
            "containers": [
                {
                    "image": "registry.example.com/solver:1",
                    "platform_requirements": {"cpu": {"requests": "100m"}},
                }
            ],
        }
    ],
}


def test_metrics_need_a_viewer_and_an_in_process_controller(make_client, bearer):
    served = make_client(metrics=ControllerMetrics())
    assert served.get("/metrics").status_code == 401
    reply = served.get("/metrics", headers=bearer["viewer"])
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    assert "mlsysops_controller_reconcile_duration_seconds_count" in reply.text
    elsewhere = make_client().get("/metrics", headers=bearer["viewer"])
    assert elsewhere.status_code == 404 and "--metrics-listen" in elsewhere.json()["detail"]


def app_values(text: str, name: str) -> dict[str, float]:
    return {
        s.labels["app"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name
    }


def check_alerts(text: str, tmp_path: Path) -> None:
    """promtool evaluating the real rules over the scraped app samples, held for 15 minutes:
    PlacementImpossible pending at first, then firing for riscv alone; no QoS alert."""
    series = []
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.startswith("mlsysops_controller_app_"):
                labels = ",".join(f'{k}="{v}"' for k, v in {"job": "controller", **s.labels}.items())
                series.append({"series": f"{s.name}{{{labels}}}", "values": f"{s.value:g}x20"})
    expected = {
        "exp_labels": {"severity": "warning", "job": "controller", "namespace": "default", "app": "riscv"},
        "exp_annotations": {
            "summary": "1 component(s) of app default/riscv cannot be placed",
            "description": "No node has fitted them for 5 minutes; the app's Planned condition counts"
            " the rejections per filter (mlsysops apps status riscv, mlsysops apps explain riscv).",
        },
    }
    tests = {
        "rule_files": [str(RULES)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {"eval_time": "3m", "alertname": "MlsysopsPlacementImpossible", "exp_alerts": []},
                    {
                        "eval_time": "15m",
                        "alertname": "MlsysopsPlacementImpossible",
                        "exp_alerts": [expected],
                    },
                    {"eval_time": "15m", "alertname": "MlsysopsAppQosTargetMissed", "exp_alerts": []},
                ],
            }
        ],
    }
    path = tmp_path / "scraped.test.yml"
    path.write_text(yaml.safe_dump(tests))
    done = subprocess.run(["promtool", "test", "rules", str(path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus")
def test_an_app_no_node_fits_is_exported_unplaced_and_alerts(standin, store, tmp_path):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
    from ctlkube_harness import FIXTURES, documents

    for doc in documents(FIXTURES / "inventory"):
        store.apply(doc, field_manager="test-admin")
    cfg = ServeConfig(
        tokens_file=tmp_path / "tokens.json",
        run_controller=True,
        mechanisms=("kubernetes",),
        policy_state=tmp_path / "policies.json",
        controller_options={"watch_timeout": 1, "availability_timeout": 2.0, "workers": 1},
    )
    app, runner, policies = wire(cfg, store)
    assert runner is not None
    viewer, operator, admin = (
        {"Authorization": f"Bearer {TokenStore(cfg.tokens_file).create(role)[0]}"}
        for role in ("viewer", "operator", "admin")
    )
    runner.start(policies.chain())
    try:
        client = TestClient(app)
        for doc in (documents(FIXTURES / "app.yaml")[0], NO_NODE_FITS):
            assert client.post("/api/v1/apps", json=doc, headers=operator).status_code in (200, 201)

        def phases(text: str) -> dict[tuple[str, str], float]:
            return {
                (s.labels["app"], s.labels["phase"]): s.value
                for f in text_string_to_metric_families(text)
                for s in f.samples
                if s.name == "mlsysops_controller_app_phase"
            }

        def scraped() -> str | None:
            # riscv's Progressing status write (phase Deploying) already counts it unplaced:
            # wait for its final status too, Degraded
            text = client.get("/metrics", headers=viewer).text
            ready = app_values(text, "mlsysops_controller_app_ready")
            done = ready.get("camera-pipeline") == 1 and phases(text).get(("riscv", "Degraded")) == 1
            return text if done else None

        text = wait_for(scraped, SLOW, "camera-pipeline Ready and riscv Degraded, in /metrics")
        assert phases(text)["camera-pipeline", "Deployed"] == 1
        assert app_values(text, "mlsysops_controller_app_components_unplaced") == {
            "camera-pipeline": 0,
            "riscv": 1,
        }
        assert app_values(text, "mlsysops_controller_app_ready") == {"camera-pipeline": 1, "riscv": 0}
        assert app_values(text, "mlsysops_controller_app_qos_violations") == {}
        check_alerts(text, tmp_path)

        # policies changed: the controller restarts, the series (and counters) stay
        deployed = _count(text, "Deployed")
        disabled = client.put(
            "/api/v1/policies/staticPlacedComponents", json={"enabled": False}, headers=admin
        )
        assert disabled.status_code == 200
        assert client.delete("/api/v1/apps/riscv", headers=operator).status_code in (200, 202, 204)
        wait_for(
            lambda: (
                "riscv"
                not in app_values(
                    client.get("/metrics", headers=viewer).text, "mlsysops_controller_app_ready"
                )
            ),
            SLOW,
            "riscv's series gone",
        )
        assert [o["metadata"]["name"] for o in store.list(R.APP, "default")[0]] == ["camera-pipeline"]
        after = client.get("/metrics", headers=viewer).text
        assert set(app_values(after, "mlsysops_controller_app_ready")) == {"camera-pipeline"}
        assert _count(after, "Deployed") >= deployed
    finally:
        runner.stop()


def _count(text: str, phase: str) -> float:
    found: dict[str, float] = {
        s.labels["phase"]: s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == "mlsysops_controller_reconcile_duration_seconds_count"
    }
    return float(found[phase])
