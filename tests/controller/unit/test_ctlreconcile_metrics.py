"""The controller's metrics (controller.reconcile.metrics): an app's state read from its stored
object, its series gone with it, the exposition well formed (promtool check metrics) and on a
registry of its own, so two controllers in one process never clash."""

from __future__ import annotations

import shutil
import socket
import subprocess
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from controller.daemon import main as daemon_main
from controller.policies.base import QosViolation
from controller.reconcile.metrics import OUTCOMES, PHASES, ControllerMetrics, app_state

APP_FAMILIES = {
    "mlsysops_controller_app_phase",
    "mlsysops_controller_app_ready",
    "mlsysops_controller_app_components_unplaced",
    "mlsysops_controller_app_qos_violations",
}


def stored(name: str, phase: str | None, ready: bool, placement: list[dict[str, Any]]) -> dict[str, Any]:
    status: dict[str, Any] = {
        "placement": placement,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
    }
    if phase is not None:
        status["phase"] = phase
    return {"metadata": {"name": name, "namespace": "apps"}, "status": status}


def samples(metrics: ControllerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def app_samples(metrics: ControllerMetrics, app: str) -> dict[str, float]:
    """name{other labels} → value, for one app's series."""
    out = {}
    for (name, labels), value in samples(metrics).items():
        given = dict(labels)
        if given.get("app") == app:
            rest = ",".join(f"{k}={v}" for k, v in labels if k not in ("app", "namespace"))
            out[f"{name}{{{rest}}}" if rest else name] = value
    return out


def test_an_unplaceable_app_counts_its_unplaced_components_from_the_status():
    obj = stored(
        "riscv",
        "Degraded",
        False,
        [
            {"component": "solver", "node": None, "cluster": None},
            {"component": "web", "node": "edge-1", "cluster": None},
            {"component": "db", "node": None, "cluster": "c1"},
        ],
    )
    state = app_state(obj, (), "default")
    assert (state.namespace, state.name, state.phase, state.ready, state.unplaced) == (
        "apps",
        "riscv",
        "Degraded",
        False,
        1,
    )


def test_qos_violations_are_counted_per_component_and_metric():
    violations = [
        QosViolation("reader", "latency_ms", 85, 40, "edge-1"),
        QosViolation("reader", "latency_ms", 90, 40, "edge-2"),
        QosViolation("reader", "fps", 3, 10, "edge-1"),
    ]
    state = app_state({"metadata": {"name": "cam"}}, violations, "default")
    assert state.namespace == "default" and state.phase is None and not state.ready
    assert state.qos == (("reader", "fps", 1), ("reader", "latency_ms", 2))


def test_an_apps_series_follow_its_state_and_vanish_when_it_is_gone():
    metrics = ControllerMetrics()
    metrics.app_seen(
        app_state(
            stored("cam", "Deployed", True, [{"component": "r", "node": "n"}]),
            [QosViolation("r", "latency_ms", 85, 40, "n")],
            "default",
        )
    )
    metrics.app_seen(
        app_state(stored("riscv", "Degraded", False, [{"component": "s", "node": None}]), (), "x")
    )
    cam = app_samples(metrics, "cam")
    assert cam["mlsysops_controller_app_phase{phase=Deployed}"] == 1
    assert sum(v for k, v in cam.items() if k.startswith("mlsysops_controller_app_phase")) == 1
    assert {k for k in cam if "phase=" in k} == {
        f"mlsysops_controller_app_phase{{phase={p}}}" for p in PHASES
    }
    assert cam["mlsysops_controller_app_ready"] == 1
    assert cam["mlsysops_controller_app_components_unplaced"] == 0
    assert cam["mlsysops_controller_app_qos_violations{component=r,metric=latency_ms}"] == 1
    assert app_samples(metrics, "riscv")["mlsysops_controller_app_components_unplaced"] == 1

    metrics.app_gone(("apps", "cam"))
    assert app_samples(metrics, "cam") == {}
    metrics.retain([("apps", "other")])  # riscv was deleted while no controller watched
    assert app_samples(metrics, "riscv") == {}


def test_reconciles_are_counted_by_outcome_from_zero():
    metrics = ControllerMetrics()
    counts = {
        dict(k[1])["phase"]: v
        for k, v in samples(metrics).items()
        if k[0] == "mlsysops_controller_reconcile_duration_seconds_count"
    }
    assert counts == dict.fromkeys(OUTCOMES, 0.0)
    metrics.reconciled("Deployed", 0.02)
    metrics.reconciled("Deployed", 0.5)
    got = samples(metrics)
    assert got["mlsysops_controller_reconcile_duration_seconds_count", (("phase", "Deployed"),)] == 2
    assert (
        got["mlsysops_controller_reconcile_duration_seconds_bucket", (("le", "0.025"), ("phase", "Deployed"))]
        == 1
    )


def test_two_controllers_in_one_process_have_their_own_registries():
    first, second = ControllerMetrics(), ControllerMetrics()  # the global registry would refuse
    first.reconciled("Failed", 0.1)
    assert (
        samples(second)["mlsysops_controller_reconcile_duration_seconds_count", (("phase", "Failed"),)] == 0
    )


@pytest.mark.skipif(shutil.which("promtool") is None, reason="needs Debian's prometheus")
def test_the_exposition_passes_promtool_check_metrics():
    metrics = ControllerMetrics()
    metrics.app_seen(app_state(stored("cam", "Deployed", True, []), [QosViolation("r", "m", 1, 2, "n")], "d"))
    metrics.reconciled("Deployed", 0.1)
    text = metrics.exposition()
    assert {f.name for f in text_string_to_metric_families(text.decode())} >= APP_FAMILIES
    done = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_daemon_refuses_a_bad_or_taken_metrics_listener(tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        daemon_main(["--metrics-listen", "9467"])
    assert exited.value.code == 2 and "expected HOST:PORT" in capsys.readouterr().err
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "ctl.db"
        assert daemon_main(["--store", str(db), "--metrics-listen", f"127.0.0.1:{port}"]) == 2
    assert f"--metrics-listen 127.0.0.1:{port}" in capsys.readouterr().err
    assert not db.exists()  # refused before the store was opened
