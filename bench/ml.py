"""ML benchmark: the learned QoS policy against static provisioning, on the real workload.

Trains the latency model (mlconnector.training.fit, gradient-boosted trees) on the recorded QoS
dataset (mlconnector/data/qos_grid.csv by default), then runs one time-varying load profile
(offered req/s stepping low -> high -> low, one value per interval) `--rounds` times on one Testbed
(private containerd, real node agent, the CPU-bound service under `--runtime`), each interval
measured twice in a row, once per provisioning, so both see the same machine (a shared VM's
speed drifts over minutes: run one after the other, either could meet a slower machine):

- static: the quota fixed at the smallest grid quota whose recorded p95 meets the target at the
  profile's peak load (the nearest recorded load at or above the peak), for this runtime and cpus;
- learned: the MAPE loop (controller.reconcile.mape.MapeLoop with its LearnedQuotaPlanner) picks,
  every interval, the least quota whose predicted p95 stays inside the target by the model's
  calibrated margin (the hold-out's measured/predicted quantile at `--confidence`), for the
  offered load of the interval about to start (the generator's rate, as a front end or a forecast
  would know it), and applies it live through the node agent.

Figures (the last line printed is one JSON object):
- model_mape / baseline_mape: the model's and a mean predictor's MAPE on the dataset's most recent
  quarter (the time-ordered hold-out fit() keeps out of training);
- qos_met_fraction / cpu_quota_used: intervals whose measured p95 met the target, and the mean
  quota (cores) set, under the learned loop; static_qos_met_fraction / static_cpu_quota_used: the
  same under static provisioning (goal: met >= 95 % with >= 20 % less CPU than static), over all
  rounds and per round;
- decision_p99_ms: the learned planner's decision (model predictions over every quota step);
- step_p99_ms: a whole loop step including the apply through the agent's gRPC API;
- retrain_s: fitting the model on the dataset.

Run as root: `python bench/ml.py [--target-ms 150] [--interval 5] [--rounds 3] [--profile 10,10,25,...]`
(about 3.5 minutes a round).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from controller.policies.learned import Goal  # noqa: E402
from controller.reconcile.mape import Change, Knob, LearnedQuotaPlanner, MapeLoop, Outcome, View  # noqa: E402
from mlconnector.contracts import CHAMPION, ModelVersion, Predictor  # noqa: E402
from mlconnector.experiment.testbed import Testbed  # noqa: E402
from mlconnector.features import DATASET_PATH, Dataset, load_dataset  # noqa: E402
from mlconnector.predictor import EstimatorPredictor  # noqa: E402
from mlconnector.training import fit  # noqa: E402

TARGET = "svc"
METRIC = "latency_p95_ms"
# 20 intervals, so one missed interval is 5 % (the goal's resolution): low -> peak -> low -> peak -> low
DEFAULT_PROFILE = "10,10,25,25,50,50,50,25,25,10,10,10,25,50,50,25,25,10,10,10"


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else math.nan


def static_quota(dataset: Dataset, *, runtime: str, cpus: int, peak_rps: float, target_ms: float) -> float:
    """The smallest recorded quota meeting the target at the profile's peak (the nearest recorded
    load at or above it; the largest recorded load if the peak is beyond the grid); the largest
    quota when none meets it. Several windows of one point: all must meet it."""
    cols = dataset.columns
    mine = [i for i in range(len(dataset)) if cols["runtime"][i] == runtime and int(cols["cpus"][i]) == cpus]
    loads = sorted({float(cols["offered_rps"][i]) for i in mine})
    load = next((v for v in loads if v >= peak_rps), loads[-1])
    worst: dict[float, float] = {}
    for i in mine:
        if float(cols["offered_rps"][i]) == load:
            q = float(cols["cpu_quota_cores"][i])
            worst[q] = max(worst.get(q, 0.0), float(cols[METRIC][i]))
    meeting = sorted(q for q, p95 in worst.items() if p95 <= target_ms)
    return meeting[0] if meeting else max(worst)


class OneModel:
    """PredictorSource with the freshly fitted model as the champion of `latency_p95_ms`."""

    def __init__(self, predictor: Predictor) -> None:
        self.predictor = predictor

    def champion(self, model_name: str) -> Predictor | None:
        return self.predictor if model_name == METRIC else None


class BedMonitor:
    """What the loop observes: the interval's offered load (set before each step), the last
    window's p95 under the loop's own quota, and the knobs the loop set (the bed runs the static
    quota in between)."""

    def __init__(self, bed: Testbed) -> None:
        self.bed = bed
        self.offered_rps = 0.0
        self.quota = bed.quota
        self.last: Mapping[str, Any] = {}

    def observe(self, now: float) -> Mapping[str, Mapping[str, float]]:
        seen = {
            "offered_rps": self.offered_rps,
            "cpus": float(self.bed.cpus),
            "runtime_gvisor": 1.0 if self.bed.runtime == "runsc" else 0.0,
            "cpu_quota_cores": self.quota,
        }
        if self.last:
            seen[METRIC] = float(self.last[METRIC])
        return {TARGET: seen}


class BedExecutor:
    def __init__(self, bed: Testbed, monitor: BedMonitor) -> None:
        self.bed, self.monitor = bed, monitor

    def apply(self, change: Change) -> Outcome:
        if change.knob != "cpu_quota_cores":
            return Outcome(False, f"unknown knob {change.knob}")
        self.bed.set_quota(change.value)
        self.monitor.quota = change.value
        return Outcome(True, f"quota {change.value:g} cores through the node agent")


class TimedPlanner:
    """The learned planner, its decision time measured."""

    def __init__(self, inner: LearnedQuotaPlanner) -> None:
        self.inner = inner
        self.name, self.interval_s = inner.name, inner.interval_s
        self.times_ms: list[float] = []

    def plan(self, view: View) -> Sequence[Change]:
        began = time.perf_counter()
        try:
            return self.inner.plan(view)
        finally:
            self.times_ms.append((time.perf_counter() - began) * 1000)


def run_interleaved(
    bed: Testbed,
    static: float,
    planner: TimedPlanner,
    profile: Sequence[float],
    interval_s: float,
    rounds: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[float], list[dict[str, Any]]]:
    """Every interval of every round: the static quota's window, then the loop's step (its
    decision applied through the agent) and its window, at the same offered load."""
    monitor = BedMonitor(bed)
    executor = BedExecutor(bed, monitor)
    knob = Knob("cpu_quota_cores", dead_band=0.05, min_interval_s=0.0, down_after=1)
    loop = MapeLoop(monitor, [planner], executor, [knob], smoothing=1.0)
    static_rows, learned_rows, steps = [], [], []
    for i, rps in enumerate(rps for _ in range(rounds) for rps in profile):
        bed.set_quota(static)
        static_rows.append(bed.measure(rps, interval_s))
        bed.set_quota(monitor.quota)  # the loop's own setting back, before it decides
        monitor.offered_rps = rps
        began = time.perf_counter()
        loop.step(i * interval_s)
        steps.append((time.perf_counter() - began) * 1000)
        row = bed.measure(rps, interval_s)
        monitor.last = row
        learned_rows.append(row)
    return static_rows, learned_rows, steps, loop.records()


def summary(rows: Sequence[Mapping[str, Any]], target_ms: float) -> tuple[float, float]:
    met = sum(1 for r in rows if float(r[METRIC]) <= target_ms)
    return met / len(rows), sum(float(r["cpu_quota_cores"]) for r in rows) / len(rows)


def per_round(rows: Sequence[Mapping[str, Any]], length: int, target_ms: float) -> list[float]:
    return [round(summary(rows[k : k + length], target_ms)[0], 3) for k in range(0, len(rows), length)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, default=DATASET_PATH, help="the recorded QoS dataset")
    parser.add_argument("--target-ms", type=float, default=150.0, help="p95 latency target")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds per load interval")
    parser.add_argument("--profile", default=DEFAULT_PROFILE, help="offered req/s per interval")
    parser.add_argument(
        "--rounds", type=int, default=3, help="times the profile runs (each interval under both)"
    )
    parser.add_argument("--runtime", default="runc", choices=("runc", "runsc"))
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument(
        "--max-holdout-error", type=float, default=2.0, help="trust the model up to this MAPE"
    )
    parser.add_argument(
        "--margin-factor", type=float, default=1.0, help="the model's hold-out margin x this"
    )
    parser.add_argument(
        "--confidence", type=float, default=0.95, choices=(0.9, 0.95),
        help="the hold-out quantile of measured/predicted the margin keeps (the goal: 95 %% met)",
    )
    parser.add_argument("--verbose", action="store_true", help="print every interval and loop record")
    args = parser.parse_args()
    profile = [float(v) for v in args.profile.split(",")]
    if args.rounds < 1 or not profile or min(profile) <= 0:
        parser.error("--rounds must be >= 1 and --profile positive req/s values")

    dataset = load_dataset(args.csv)
    began = time.perf_counter()
    trained = fit(dataset)
    retrain_s = time.perf_counter() - began
    version = ModelVersion(
        name=METRIC,
        version="bench",
        signature=trained.signature,
        metrics=dict(trained.metrics),
        tags={"transform": trained.transform},
        aliases=(CHAMPION,),
        lineage=trained.lineage,
        created_at=time.time(),
    )
    goal = Goal(METRIC, "lower_or_equal", args.target_ms)
    planner = TimedPlanner(
        LearnedQuotaPlanner(
            {TARGET: goal},
            OneModel(EstimatorPredictor(version, trained.estimator)),
            interval_s=0.0,
            step=0.2,
            max_cores=float(args.cpus),
            max_holdout_error=args.max_holdout_error,
            margin_factor=args.margin_factor,
            confidence=args.confidence,
        )
    )
    fixed = static_quota(
        dataset, runtime=args.runtime, cpus=args.cpus, peak_rps=max(profile), target_ms=args.target_ms
    )
    workdir = Path(tempfile.mkdtemp(prefix="mlsysops-bench-ml-"))
    try:
        with Testbed(workdir) as bed:
            bed.set_runtime(args.runtime)
            bed.set_cpus(args.cpus)
            static_rows, learned_rows, steps, records = run_interleaved(
                bed, fixed, planner, profile, args.interval, args.rounds
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if args.verbose:
        for s, le in zip(static_rows, learned_rows, strict=True):
            print(
                f"{s['offered_rps']:>5g} rps  static {s['cpu_quota_cores']:.1f} -> {s[METRIC]:7.1f} ms   "
                f"learned {le['cpu_quota_cores']:.1f} -> {le[METRIC]:7.1f} ms"
            )
        for r in records:
            print(json.dumps(r))
        if planner.inner.skipped:
            print("learned planner skipped:", planner.inner.skipped)
    met, used = summary(learned_rows, args.target_ms)
    static_met, static_used = summary(static_rows, args.target_ms)
    figures = {
        "bench": "ml",
        "model_mape": round(trained.metrics["holdout_mape"], 4),
        "baseline_mape": round(trained.metrics["baseline_mape"], 4),
        "qos_met_fraction": round(met, 3),
        "cpu_quota_used": round(used, 3),
        "static_qos_met_fraction": round(static_met, 3),
        "static_cpu_quota_used": round(static_used, 3),
        "qos_met_fraction_per_round": per_round(learned_rows, len(profile), args.target_ms),
        "static_qos_met_fraction_per_round": per_round(static_rows, len(profile), args.target_ms),
        "cpu_saving_vs_static": round(1 - used / static_used, 3) if static_used else None,
        "decision_p99_ms": round(percentile(planner.times_ms, 0.99), 2),
        "step_p99_ms": round(percentile(steps, 0.99), 2),
        "retrain_s": round(retrain_s, 3),
        "target_ms": args.target_ms,
        "profile_rps": profile,
        "interval_s": args.interval,
        "rounds": args.rounds,
        "runtime": args.runtime,
        "cpus": args.cpus,
        "static_quota": fixed,
        "dataset_rows": len(dataset),
        "loop": "controller.reconcile.mape.MapeLoop + LearnedQuotaPlanner",
        "targets": {"qos_met_fraction_min": 0.95, "cpu_saving_vs_static_min": 0.2},
        "cpus_host": os.cpu_count(),
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
