"""qosLearnedPlacer with a real scikit-learn model (mlconnector.training.fit: gradient-boosted trees,
registered and promoted in an embedded MLflow registry, read through its champion cache and
explained by SHAP, as in the daemon) trained on the recorded dataset
(mlconnector/data/qos_grid.csv: the real workload measured under a grid of quotas, cpusets,
runtimes and loads), judged on conditions it was not trained on, against static provisioning.

Held-out conditions: for each load level, a model is trained without the runc windows at that
load (it saw the load under gVisor only, and runc under the other loads), registered and
promoted, and the policy sizes runc at that load; the held-out windows decide whether the
chosen setting meets the target. Two static policies size one quota for every load from the
measurements themselves: for the peak load (the usual static provisioning: it over-provisions
every lower load) and for the lowest (it under-provisions the higher ones). The learned policy
must meet the target (twice the best p95 measured at the peak load) at every level with less
CPU in all than the peak-sized static quota."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from controller.inventory import Inventory
from controller.model import App, parse_document
from controller.policies import Telemetry
from controller.policies.learned import QosLearnedPlacer
from mlconnector.features import Dataset
from mlconnector.registry import ChampionPredictors, MlflowRegistry
from mlconnector.training import fit

MAX_ERROR_HERE = 2.0  # above the hold-out errors this dataset's models reach (about 0.9)
DATASET = Path(__file__).resolve().parents[3] / "mlconnector" / "data" / "qos_grid.csv"


def load(path: Path) -> list[dict[str, float | str]]:
    with path.open() as f:
        return [
            {k: (v if k == "runtime" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(f)
            if row["runtime"] in ("runc", "runsc")
        ]


def load_levels(rows: Sequence[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Rows grouped by offered load (the generator's nominal rate): sorted, a new level where the
    rate jumps by more than 10 %."""
    levels: list[list[Mapping[str, Any]]] = []
    for row in sorted(rows, key=lambda r: r["offered_rps"]):
        if levels and row["offered_rps"] <= 1.1 * levels[-1][-1]["offered_rps"]:
            levels[-1].append(row)
        else:
            levels.append([row])
    return levels


def measured(level: Sequence[Mapping[str, Any]], quota: float, cpus: int | None = None) -> float | None:
    """The median measured p95 latency of runc windows at this quota (and cpuset size, if given;
    else the most CPUs measured: one CPU cannot serve the peak at any quota)."""
    cells = [r for r in level if r["runtime"] == "runc" and abs(r["cpu_quota_cores"] - quota) < 1e-9]
    if cpus is None and cells:
        cpus = int(max(r["cpus"] for r in cells))
    values = [r["latency_p95_ms"] for r in cells if int(r["cpus"]) == cpus]
    return statistics.median(values) if values else None


def least_meeting(level: Sequence[Mapping[str, Any]], quotas: Sequence[float], target: float) -> float | None:
    return next((q for q in quotas if (m := measured(level, q)) is not None and m <= target), None)


def qos_app(target: float) -> App:
    qos = [{"application_metric_id": "latency_p95_ms", "target": target, "relation": "lower_or_equal"}]
    doc = {"MLSysOpsApp": {"name": "bench", "components": [{
        "metadata": {"name": "svc"}, "qos_metrics": qos,  # runs runc, containerd's default
        "containers": [{"image": "svc", "platform_requirements": {"cpu": {"requests": "100m"}}}],
    }]}}  # fmt: skip
    app = parse_document(doc)
    assert isinstance(app, App)
    return app


def node(cores: int) -> Inventory:
    doc = {
        "apiVersion": "mlsysops.eu/v1", "kind": "MLSysOpsNode", "metadata": {"name": "testbed"},
        "continuum_layer": "edge", "environment": {"container_runtime": ["containerd"]},
        "hardware": {"cpu": {"architecture": "amd64", "cores": cores}, "memory": 8},
        "agent": {"target": "unix:///run/agent.sock"}, "runtimes": [{"handler": "runc", "available": True}],
    }  # fmt: skip
    return Inventory.from_descriptions([parse_document(doc)])


def test_the_learned_policy_meets_the_target_on_held_out_loads_where_static_policies_do_not(
    tmp_path: Path,
) -> None:
    rows = load(DATASET)
    levels = load_levels(rows)
    assert len(levels) >= 3, f"{len(levels)} load levels recorded: too few"
    quotas = sorted({float(r["cpu_quota_cores"]) for r in rows})
    # static provisioning, sized from the measurements: for the peak load (the usual way: it
    # over-provisions every lower load), and for the lowest (it under-provisions the higher ones)
    peak, lowest = levels[-1], levels[0]
    target = 2.0 * min(m for q in quotas if (m := measured(peak, q)) is not None)  # the peak can meet it
    static_peak, static_low = least_meeting(peak, quotas, target), least_meeting(lowest, quotas, target)
    assert static_peak is not None and static_low is not None and static_low < static_peak

    registry = MlflowRegistry.embedded(tmp_path / "registry")
    source = ChampionPredictors(registry, refresh_s=0.0)  # the model reaches the policy as in the daemon
    cores = int(max(r["cpus"] for r in rows))
    # The recorded windows are short (4-5 s): p95 near saturation varies a lot from one to the
    # next, and the models' error on held-out windows (about 0.9) is above the policy's default
    # trust threshold (0.25). With the default the policy then lets the heuristic decide, visibly
    # (asserted wherever the error is above it); `lenient` trusts the model, its margin being the
    # hold-out's measured/predicted p90, to judge the decisions it would make.
    strict = QosLearnedPlacer(source, quotas=quotas)
    lenient = QosLearnedPlacer(source, quotas=quotas, max_holdout_error=MAX_ERROR_HERE)
    app, inventory = qos_app(target), node(cores)
    learned: list[float] = []
    errors: list[float] = []
    for level in levels:
        rps = statistics.median(r["offered_rps"] for r in level)
        # held out: the runc windows at this load (the model saw this load under runsc only, and
        # runc under the other loads), the condition the policy is then asked to size
        train = sorted((r for r in rows if not (r in level and r["runtime"] == "runc")),
                       key=lambda r: r["window_start"])  # fmt: skip
        dataset = Dataset.from_rows(train, source=f"dataset:{DATASET.name} without runc at {rps:g} req/s")
        fitted = fit(dataset)  # the grid is recorded shuffled: its recent quarter is a fair hold-out
        metrics = dict(fitted.metrics)
        version = registry.register("latency_p95_ms", fitted.estimator, fitted.signature,
                                    metrics=metrics, lineage=fitted.lineage)  # fmt: skip
        registry.promote("latency_p95_ms", version.version)
        telemetry = Telemetry(offered_rps={"svc": rps})
        errors.append(metrics["holdout_mape"])
        (fallback,) = strict.plan(app, inventory, telemetry).decisions
        if metrics["holdout_mape"] > strict.max_holdout_error:
            assert f"{version.ref}'s hold-out error" in fallback.model["fallback"], fallback.model
            assert fallback.node == "testbed" and "fell back to the heuristic" in fallback.reason
        (d,) = lenient.plan(app, inventory, telemetry).decisions
        assert d.model.get("model") == version.ref, d.model
        setting = d.model["setting"]
        got = measured(level, setting["cpu_quota_cores"], setting["cpus"])
        got = got if got is not None else measured(level, setting["cpu_quota_cores"])
        assert got is not None and got <= target, (rps, setting, got, target)
        assert d.model["base_value"] + sum(d.model["attributions"].values()) == pytest.approx(
            d.model["prediction"]
        )
        learned.append(setting["cpu_quota_cores"])
    low_misses = [lv for lv in levels if (m := measured(lv, static_low)) is None or m > target]
    assert low_misses, "static sized for the lowest load should under-provision a higher one"
    assert sum(learned) < static_peak * len(levels), (learned, static_peak)
