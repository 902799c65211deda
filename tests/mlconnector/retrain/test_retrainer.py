"""The retraining loop on the recorded QoS grid and a real MLflow registry (embedded, tmp dir).

The telemetry is a timeline of real measured windows (mlconnector/data/qos_grid.csv): the
champion is trained on one random half of the grid's conditions; later the loop sees either the
other half (the same conditions: no drift) or only the windows at the upper half of the offered
load (drift on offered_rps). Times are placed around the registry's own clock, since the policy
compares the check's `now` with when the last version was registered.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from mlconnector.contracts import CHALLENGER, CHAMPION
from mlconnector.features import DATASET_PATH, Dataset, load_dataset
from mlconnector.prometheus import EmptyWindow, SourceUnavailable
from mlconnector.registry import MlflowRegistry
from mlconnector.retrainer import (
    FAILED,
    PROMOTED,
    SKIPPED,
    DatasetWindows,
    Retrainer,
    RetrainRunner,
    RetrainTarget,
)
from mlconnector.training import LATENCY_SIGNATURE, RetrainPolicy, retrain

NAME = "latency_p95_ms"
ROW_S = 12.0  # so a period of half the grid (about 1600 s) ends before the next begins


def placed(rows: Dataset, end: float) -> Dataset:
    """`rows` re-timed as consecutive ROW_S windows ending at `end`."""
    cols = {n: rows.columns[n] for n in rows.names}
    cols["window_start"] = end - ROW_S * len(rows) + ROW_S * np.arange(len(rows))
    cols["window_s"] = np.full(len(rows), ROW_S)
    return Dataset.of(cols, "recorded")


def concat(*parts: Dataset) -> Dataset:
    return Dataset.of({n: np.concatenate([p.columns[n] for p in parts]) for n in parts[0].names}, "timeline")


class Timeline:
    """The champion is trained on half A of the grid (windows ending at t - 1000 s); then come
    `periods`: ("stable", end) is half B ending at t + end, ("busy", end) the windows of B whose
    offered load is above its median, ending at t + end."""

    def __init__(self, registry: MlflowRegistry, periods: list[tuple[str, float]]) -> None:
        grid = load_dataset(DATASET_PATH)
        order = np.random.default_rng(0).permutation(len(grid))
        half_a, half_b = grid.take(order[: len(grid) // 2]), grid.take(order[len(grid) // 2 :])
        rps = half_b.column("offered_rps")
        kinds = {"stable": half_b, "busy": half_b.where(rps > np.median(rps))}
        self.rows = {k: len(v) for k, v in kinds.items()}
        self.t = time.time()
        a = placed(half_a, self.t - 1000.0)
        later = [placed(kinds[k], self.t + end) for k, end in periods]
        self.source = DatasetWindows(concat(a, *later), "timeline")
        self.champion = retrain(registry, NAME, a, LATENCY_SIGNATURE, reason="seed").version
        assert CHAMPION in self.champion.aliases

    def target(self, policy: RetrainPolicy, kind: str) -> RetrainTarget:
        """A target whose lookback is the length of one period of `kind`."""
        return RetrainTarget(NAME, self.source, self.rows[kind] * ROW_S, policy, LATENCY_SIGNATURE)


@pytest.fixture
def registry(tmp_path: Path) -> MlflowRegistry:
    return MlflowRegistry.embedded(tmp_path / "models")


DRIFT_ONLY = RetrainPolicy(interval_s=None, on_drift=True, min_gap_s=600.0)


def test_a_stable_window_is_skipped_and_a_shifted_one_retrains(registry: MlflowRegistry) -> None:
    line = Timeline(registry, [("stable", 1000.0), ("busy", 2400.0)])
    stable = Retrainer(registry, [line.target(DRIFT_ONLY, "stable")])
    [record] = stable.run_once(line.t + 1000.0)
    assert record.outcome == SKIPPED and record.version is None, record
    assert "no drift" in record.reason and record.drift is not None and not record.drift["drifted"]
    assert record.drift["current_rows"] == line.rows["stable"]
    assert [v.version for v in registry.versions(NAME)] == ["1"]

    shifted = Retrainer(registry, [line.target(DRIFT_ONLY, "busy")])
    [record] = shifted.run_once(line.t + 2400.0)
    assert record.outcome in (PROMOTED, "challenger"), record
    assert record.trigger is not None and record.trigger.startswith("drift: offered_rps")
    assert record.drift is not None and record.drift["features"]["offered_rps"]["drifted"]
    assert record.version == "2" and record.challenger_mape is not None and record.champion_mape is not None
    new = registry.get(NAME, record.version)
    assert new.tags["retrain_reason"] == record.trigger and new.tags["retrain_source"] == "timeline"
    assert new.lineage is not None and new.lineage.parent_version == "1"
    # trained on the shifted window only: its lineage lies in it
    assert new.lineage.window_start >= line.t + 2400.0 - line.rows["busy"] * ROW_S
    expected = CHAMPION if record.outcome == PROMOTED else CHALLENGER
    assert expected in new.aliases
    assert (record.challenger_mape < record.champion_mape) == (record.outcome == PROMOTED)
    assert shifted.records() == [record]


def test_drift_waits_for_the_minimum_gap_after_the_last_training(registry: MlflowRegistry) -> None:
    line = Timeline(registry, [("busy", 1000.0), ("busy", 2000.0)])
    gap = RetrainPolicy(interval_s=None, on_drift=True, min_gap_s=1500.0)
    loop = Retrainer(registry, [line.target(gap, "busy")])
    [early] = loop.run_once(line.t + 1000.0)  # drifted, ~1000 s after the champion was registered
    assert early.outcome == SKIPPED and early.drift is not None and early.drift["drifted"], early
    assert "within the minimum gap of 1500 s" in early.reason
    assert len(registry.versions(NAME)) == 1
    [late] = loop.run_once(line.t + 2000.0)  # the same shifted inputs, past the gap
    assert late.outcome != SKIPPED and late.trigger is not None and late.trigger.startswith("drift:"), late
    assert len(registry.versions(NAME)) == 2
    # the version just trained (champion or challenger) restarts the gap: no retrain at every check
    newest = max(v.created_at for v in registry.versions(NAME))
    assert newest + gap.min_gap_s > line.t + 1000.0
    [again] = loop.run_once(line.t + 1000.0)
    assert again.outcome == SKIPPED, again
    assert len(registry.versions(NAME)) == 2


def test_the_schedule_retrains_after_its_interval_and_not_before(registry: MlflowRegistry) -> None:
    line = Timeline(registry, [("stable", 1000.0), ("stable", 2600.0)])
    every = RetrainPolicy(interval_s=1600.0, on_drift=True, min_gap_s=600.0)
    loop = Retrainer(registry, [line.target(every, "stable")])
    [before] = loop.run_once(line.t + 1000.0)
    assert before.outcome == SKIPPED and "next scheduled in" in before.reason and "no drift" in before.reason
    [due] = loop.run_once(line.t + 2600.0)
    assert due.trigger is not None and due.trigger.startswith("scheduled:"), due
    assert due.outcome != SKIPPED and len(registry.versions(NAME)) == 2


def test_a_model_without_versions_is_trained_first(registry: MlflowRegistry) -> None:
    grid = placed(load_dataset(DATASET_PATH), time.time())
    loop = Retrainer(registry, [RetrainTarget(NAME, DatasetWindows(grid), 96 * ROW_S, DRIFT_ONLY)])
    [record] = loop.run_once(time.time() + 1.0)
    assert record.outcome == PROMOTED and record.trigger == "no model trained yet", record
    assert registry.get(NAME, CHAMPION).version == record.version == "1"


class Down:
    name = "prometheus:http://127.0.0.1:9"

    def window(self, start: float, end: float) -> Dataset:
        raise SourceUnavailable("prometheus at http://127.0.0.1:9: ConnectError: connection refused")


def test_a_failing_source_is_recorded_and_the_others_are_still_checked(registry: MlflowRegistry) -> None:
    line = Timeline(registry, [("stable", 1000.0)])
    other = RetrainTarget("throughput_rps", Down(), 600.0, DRIFT_ONLY)
    loop = Retrainer(registry, [other, line.target(DRIFT_ONLY, "stable")])
    failed, checked = loop.run_once(line.t + 1000.0)
    assert failed.model == "throughput_rps" and failed.outcome == FAILED
    assert "connection refused" in failed.reason and "prometheus:http://127.0.0.1:9" in failed.reason
    assert checked.model == NAME and checked.outcome == SKIPPED
    # a window with no telemetry at all is a failure of that check too, not of the loop
    empty = Retrainer(registry, [line.target(DRIFT_ONLY, "busy")])
    [record] = empty.run_once(line.t + 50_000.0)
    assert record.outcome == FAILED and "no window starts" in record.reason
    assert isinstance(EmptyWindow("x"), Exception)


def test_the_runner_checks_on_its_interval_until_stopped(registry: MlflowRegistry) -> None:
    loop = Retrainer(registry, [RetrainTarget(NAME, Down(), 600.0, DRIFT_ONLY)])
    checked = threading.Event()
    runner = RetrainRunner(loop, 0.2, clock=lambda: (checked.set(), time.time())[1])
    assert not runner.running and loop.records() == []  # nothing runs before start()
    runner.start()
    try:
        assert checked.wait(30)
        deadline = time.monotonic() + 30
        while len(loop.records()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        runner.stop()
    assert not runner.running
    count = len(loop.records())
    assert count >= 2 and all(r.outcome == FAILED for r in loop.records())  # failing, yet looping
    time.sleep(0.5)
    assert len(loop.records()) == count  # stopped means stopped
