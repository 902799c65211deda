"""The MAPE loop: per-planner intervals, conflicts resolved as documented and recorded, executor
failures retried (not lost), hysteresis and rate limits, and no flapping under noisy telemetry
while a real load step still triggers a change within one interval.

The world is simulated: a service whose p95 latency follows an analytic queueing model of its
CPU quota and load (the Predictor fake of test_learned_policy fitted from the same function), and
seeded noise on what the monitor reports."""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from controller.policies.learned import Goal
from controller.reconcile.mape import (
    AGREED,
    APPLIED,
    FAILED,
    HELD,
    OVERRIDDEN,
    Change,
    Knob,
    LearnedQuotaPlanner,
    MapeLoop,
    Observations,
    Outcome,
    QosViolationPlanner,
    View,
)
from mlconnector.contracts import (
    LATENCY_TARGET,
    QOS_FEATURES,
    Explanation,
    ModelVersion,
    Predictor,
    Signature,
)

WORK_MS = 5.0  # CPU per request, ms of one core


def analytic_p95(row: Mapping[str, float]) -> float:
    """p95 latency (ms) of an M/M/1-like server: capacity quota/work, 3x the mean sojourn time."""
    rho = row["offered_rps"] * WORK_MS / (row["cpu_quota_cores"] * 1000.0)
    return 3.0 * WORK_MS / (1.0 - rho) if rho < 1.0 else 10_000.0


class FakePredictor:
    """A Predictor fake computing `analytic_p95` (the decision logic is under test, not a model)."""

    def __init__(self, error: float) -> None:
        signature = Signature(QOS_FEATURES, LATENCY_TARGET)
        self.version = ModelVersion(
            "latency_p95_ms", "1", signature, {"holdout_mape": error}, {}, (), None, 0.0
        )

    def predict(self, rows: Sequence[Mapping[str, float]]) -> list[float]:
        return [analytic_p95(r) for r in rows]

    def explain(self, row: Mapping[str, float]) -> Explanation:
        return Explanation(self.version.ref, analytic_p95(row), 0.0, {}, "fake", dict(row))


class Models:
    def __init__(self, **models: Predictor) -> None:
        self.models = models

    def champion(self, model_name: str) -> Predictor | None:
        return self.models.get(model_name)


GOAL = Goal("latency_p95_ms", "lower_or_equal", 40.0)
QUOTA = Knob("cpu_quota_cores", dead_band=0.15, min_interval_s=30.0, down_after=3, retry_s=10.0)


class Service:
    """The simulated component: its quota is what the executor applied; its load is set by the
    test; the monitor reports load and latency with seeded multiplicative noise."""

    def __init__(self, rps: float, quota: float, *, noise: float = 0.0, seed: int = 0) -> None:
        self.rps, self.quota, self.noise = rps, quota, noise
        self.random = random.Random(seed)

    def observe(self, now: float) -> Observations:
        latency = analytic_p95(
            {"cpu_quota_cores": self.quota, "runtime_gvisor": 0.0, "offered_rps": self.rps}
        )
        jitter = lambda: 1.0 + self.random.gauss(0.0, self.noise)  # noqa: E731
        return {"svc": {"offered_rps": self.rps * jitter(), "latency_p95_ms": latency * jitter(),
                        "cpu_quota_cores": self.quota, "cpus": 4.0}}  # fmt: skip


class Executor:
    def __init__(self, service: Service | None = None, failures: int = 0) -> None:
        self.service, self.failures = service, failures
        self.calls: list[Change] = []

    def apply(self, change: Change) -> Outcome:
        self.calls.append(change)
        if self.failures > 0:
            self.failures -= 1
            raise OSError("node agent unreachable")
        if self.service is not None:
            self.service.quota = change.value
        return Outcome(True, "cgroup cpu.max written")


class Fixed:
    """A planner proposing given changes, counting its rounds."""

    def __init__(self, name: str, interval_s: float, *changes: Change) -> None:
        self.name, self.interval_s, self.changes = name, interval_s, changes
        self.runs: list[float] = []

    def plan(self, view: View) -> Sequence[Change]:
        self.runs.append(view.now)
        return self.changes


class Static:
    def observe(self, now: float) -> Observations:
        return {"svc": {"cpu_quota_cores": 1.0}}


def events(records: Sequence[Any], *kinds: str) -> list[Any]:
    return [r for r in records if r.event in kinds]


def test_each_planner_runs_at_its_own_interval() -> None:
    fast, slow = Fixed("fast", 10.0), Fixed("slow", 30.0)
    loop = MapeLoop(Static(), [fast, slow], Executor(), [QUOTA])
    for t in range(0, 65, 5):
        loop.step(float(t))
    assert fast.runs == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert slow.runs == [0.0, 30.0, 60.0]


def test_a_fix_beats_a_saving_then_priority_then_the_more_conservative_value_all_recorded() -> None:
    saving = Change("svc", "cpu_quota_cores", 0.5, "model: 0.5 cores suffice", priority=50)
    fix = Change("svc", "cpu_quota_cores", 1.5, "latency missed", priority=1, fixes_violation=True)
    executor = Executor()
    loop = MapeLoop(Static(), [Fixed("learned", 10, saving), Fixed("reactive", 10, fix)], executor, [QUOTA])
    records = loop.step(0.0)
    (lost,) = events(records, OVERRIDDEN)
    assert (lost.planner, lost.value) == ("learned", 0.5)
    assert lost.reason.startswith("reactive's change fixes a QoS violation; this one does not (kept 1.5)")
    assert [c.value for c in executor.calls] == [1.5]
    assert [(r.event, r.planner) for r in records] == [
        ("proposed", "learned"), ("proposed", "reactive"), ("overridden", "learned"), ("applied", "reactive"),
    ]  # fmt: skip

    # no fix either side: the higher priority wins; equal priority: the more conservative value
    low = Change("svc", "cpu_quota_cores", 2.0, "a", priority=1)
    high = Change("svc", "cpu_quota_cores", 3.0, "b", priority=5)
    same = Change("svc", "cpu_quota_cores", 2.5, "c", priority=1)
    loop = MapeLoop(Static(), [Fixed("p", 10, low), Fixed("q", 10, high)], Executor(), [QUOTA])
    (lost,) = events(loop.step(0.0), OVERRIDDEN)
    assert lost.planner == "p" and "q's priority 5 > 1" in lost.reason
    loop = MapeLoop(Static(), [Fixed("p", 10, low), Fixed("r", 10, same)], Executor(), [QUOTA])
    records = loop.step(0.0)
    (lost,) = events(records, OVERRIDDEN)
    assert lost.planner == "p" and "equal rank: r's 2.5 is more conservative" in lost.reason
    assert events(records, APPLIED)[0].value == 2.5
    loop = MapeLoop(Static(), [Fixed("p", 10, low), Fixed("s", 10, low)], Executor(), [QUOTA])
    (agreed,) = events(loop.step(0.0), AGREED)
    assert agreed.planner == "s" and agreed.reason.startswith("agrees with p")
    assert json.loads(json.dumps(loop.records())) == loop.records()  # the history, as JSON


def test_an_executor_failure_is_recorded_and_retried_until_it_succeeds() -> None:
    service = Service(rps=100.0, quota=1.0)
    executor = Executor(service, failures=2)
    once = Fixed("once", 1000.0, Change("svc", "cpu_quota_cores", 2.0, "more"))
    loop = MapeLoop(service, [once], executor, [QUOTA])
    (failed,) = events(loop.step(0.0), FAILED)
    assert "OSError: node agent unreachable; retrying in 10s" in failed.reason
    assert not events(loop.step(5.0), APPLIED, FAILED)  # not before retry_s
    (again,) = events(loop.step(10.0), FAILED)
    assert "(retry 1)" in again.reason
    (applied,) = events(loop.step(20.0), APPLIED)
    assert applied.value == 2.0 and "(retry 2)" in applied.reason and service.quota == 2.0
    assert once.runs == [0.0] and len(executor.calls) == 3  # planned once, applied on the third try
    assert not events(loop.step(30.0), APPLIED, FAILED)  # done: no more retries


def test_hysteresis_dead_band_rate_limit_and_scale_down_after_consecutive_rounds() -> None:
    service = Service(rps=100.0, quota=2.0)
    executor = Executor(service)
    planner = Fixed("p", 10.0, Change("svc", "cpu_quota_cores", 2.1, "tiny"))
    loop = MapeLoop(service, [planner], executor, [QUOTA])
    (held,) = events(loop.step(0.0), HELD)
    assert "within the dead band" in held.reason and not executor.calls
    planner.changes = (Change("svc", "cpu_quota_cores", 3.0, "up"),)
    assert events(loop.step(10.0), APPLIED)
    planner.changes = (Change("svc", "cpu_quota_cores", 4.0, "up again"),)
    (limited,) = events(loop.step(20.0), HELD)
    assert limited.reason.startswith("rate limit: last change 10s ago")
    # scale-down: held for two rounds, then applied at the most conservative value proposed
    for t, v in ((50.0, 1.5), (60.0, 1.8), (70.0, 1.6)):
        planner.changes = (Change("svc", "cpu_quota_cores", v, "down"),)
        records = loop.step(t)
    (down,) = events(records, APPLIED)
    assert down.value == 1.8 and service.quota == 1.8
    assert [r.reason for r in events(loop.history, HELD)][-2:] == [
        "scale-down 1/3 consecutive rounds", "scale-down 2/3 consecutive rounds",
    ]  # fmt: skip


def test_a_fix_in_the_conservative_direction_is_not_rate_limited() -> None:
    service = Service(rps=100.0, quota=1.0)
    planner = Fixed("p", 5.0, Change("svc", "cpu_quota_cores", 2.0, "up"))
    loop = MapeLoop(service, [planner], Executor(service), [QUOTA])
    loop.step(0.0)
    planner.changes = (Change("svc", "cpu_quota_cores", 3.0, "violation", fixes_violation=True),)
    (applied,) = events(loop.step(5.0), APPLIED)
    assert applied.value == 3.0


def run_closed_loop(service: Service, seconds: int, loop: MapeLoop, start: int = 0) -> list[Any]:
    out = []
    for t in range(start, start + seconds, 5):
        out += loop.step(float(t))
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_noisy_telemetry_does_not_flap_and_a_load_step_still_acts_within_one_interval(seed: int) -> None:
    service = Service(rps=200.0, quota=1.0, noise=0.05, seed=seed)
    models = Models(latency_p95_ms=FakePredictor(error=0.1))
    learned = LearnedQuotaPlanner({"svc": GOAL}, models, interval_s=30.0, max_cores=4.0)
    reactive = QosViolationPlanner({"svc": GOAL}, interval_s=10.0, max_value=4.0)
    loop = MapeLoop(service, [learned, reactive], Executor(service), [QUOTA])
    settling = run_closed_loop(service, 120, loop)
    assert events(settling, APPLIED)  # it sized the under-provisioned service
    settled = service.quota
    steady = run_closed_loop(service, 1800, loop, start=120)  # 30 min of noise around a steady load
    changes = events(steady, APPLIED)
    assert len(changes) <= 2, [(r.at, r.value, r.planner) for r in changes]
    assert service.quota <= settled + 0.5
    held = events(steady, HELD)
    assert (
        held
        or len(events(steady, "proposed")) == 0
        or all(abs(r.value - service.quota) < 1e-9 for r in events(steady, "proposed"))
    )
    # meets the target (noise-free check) with the chosen quota
    assert analytic_p95({"cpu_quota_cores": service.quota, "offered_rps": 200.0}) <= 40.0
    # a real load step: doubled load → a change within one interval of the learned planner
    service.rps = 400.0
    before = service.quota
    step = run_closed_loop(service, 35, loop, start=1920)
    ups = [r for r in events(step, APPLIED) if r.value > before]
    assert ups and ups[0].at - 1920 <= learned.interval_s
    after = run_closed_loop(service, 300, loop, start=1955)
    assert analytic_p95({"cpu_quota_cores": service.quota, "offered_rps": 400.0}) <= 40.0
    assert len(events(after, APPLIED)) <= 2


def test_an_untrustworthy_model_proposes_nothing_and_the_reactive_guard_still_acts() -> None:
    service = Service(rps=200.0, quota=1.0)
    learned = LearnedQuotaPlanner({"svc": GOAL}, Models(latency_p95_ms=FakePredictor(error=0.9)))
    reactive = QosViolationPlanner({"svc": GOAL}, interval_s=10.0, consecutive=2)
    loop = MapeLoop(service, [learned, reactive], Executor(service), [QUOTA])
    records = run_closed_loop(service, 30, loop)
    assert "hold-out error 0.900 is above 0.25" in learned.skipped["svc"]
    assert {r.planner for r in events(records, "proposed")} == {"qos-reactive"}
    assert [r.value for r in events(records, APPLIED)] == [1.25]  # at the second missed round


def test_run_steps_on_a_thread_until_stopped() -> None:
    service = Service(rps=100.0, quota=1.0)
    planner = Fixed("p", 0.0, Change("svc", "cpu_quota_cores", 1.0, "hold"))
    loop = MapeLoop(service, [planner], Executor(service), [QUOTA])
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), kwargs={"tick_s": 0.01}, daemon=True)
    thread.start()
    while len(planner.runs) < 3:
        stop.wait(0.01)
    stop.set()
    thread.join(2.0)
    assert not thread.is_alive() and len(planner.runs) >= 3


def test_the_history_is_bounded() -> None:
    planner = Fixed("p", 0.0, Change("svc", "cpu_quota_cores", 1.0, "hold"))
    loop = MapeLoop(Static(), [planner], Executor(), [QUOTA], history=50)
    for t in range(200):
        loop.step(float(t))
    assert len(loop.records()) == 50 and loop.records()[-1]["at"] == 199.0
