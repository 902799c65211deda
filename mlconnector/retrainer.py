"""The retraining loop: scheduled and drift-triggered retraining, run, not only decided.

`training.RetrainPolicy` says when to retrain; this module does it. Per model (a `RetrainTarget`:
its name, where its telemetry is, how far back a check looks, its policy), `Retrainer.run_once(now)`:

1. reads the champion (none: the model is trained for the first time);
2. pulls the recent window from the target's `WindowSource` (`now - lookback_s` to `now`);
3. pulls the champion's training window again from the same source (its Lineage says when) and
   measures drift per feature (`drift.detect`) of the recent window against it;
4. asks the policy, with the time of the last training (the newest version, champion or not, so
   a challenger that was kept also counts against the minimum gap);
5. retrains on the recent window when told to (`training.retrain`: promoted only if it beats the
   champion on the most recent part, else alias challenger).

Each check ends in one `RetrainRecord` (promoted, challenger, skipped, failed) that says why; a
failing source or registry is a `failed` record for that model and the loop goes on. The clock is
injected (`now`), so tests drive checks at chosen times; `RetrainRunner` is the thread that calls
`run_once` every `interval_s`, started explicitly (`start()`), never by a constructor.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlconnector import drift, training
from mlconnector.contracts import CHAMPION, ModelRegistry, ModelVersion, Signature
from mlconnector.drift import DriftReport
from mlconnector.features import Dataset
from mlconnector.prometheus import EmptyWindow, SourceError, WindowSource
from mlconnector.training import RetrainPolicy

log = logging.getLogger(__name__)

PROMOTED, CHALLENGER_KEPT, SKIPPED, FAILED = "promoted", "challenger", "skipped", "failed"


@dataclass(frozen=True)
class RetrainTarget:
    """One model the loop looks after. `signature` is used when the model has no version yet (a
    model that exists keeps its champion's signature)."""

    name: str
    source: WindowSource
    lookback_s: float = 3600.0
    policy: RetrainPolicy = field(default_factory=RetrainPolicy)
    signature: Signature | None = None
    holdout_fraction: float = 0.25


@dataclass(frozen=True)
class RetrainRecord:
    """The outcome of one check of one model."""

    model: str
    at: float  # the check's `now`
    outcome: str  # promoted | challenger | skipped | failed
    reason: str  # why (the policy's trigger and the promotion verdict, or why not, or the error)
    version: str | None = None  # the version trained, when one was
    trigger: str | None = None  # the policy's reason to retrain
    drift: dict[str, Any] | None = None  # DriftReport.to_json() when drift was measured
    champion_mape: float | None = None
    challenger_mape: float | None = None
    window: tuple[float, float] | None = None  # the recent window checked (and trained on)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "at": self.at,
            "outcome": self.outcome,
            "reason": self.reason,
            "version": self.version,
            "trigger": self.trigger,
            "drift": self.drift,
            "champion_mape": self.champion_mape,
            "challenger_mape": self.challenger_mape,
            "window": list(self.window) if self.window else None,
        }


@dataclass
class Retrainer:
    """Checks every target once per `run_once(now)`; keeps the last `keep` records."""

    registry: ModelRegistry
    targets: Sequence[RetrainTarget]
    keep: int = 200
    _records: deque[RetrainRecord] = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"a model is listed twice among the retrain targets: {names}")
        self._records = deque(maxlen=self.keep)

    def records(self, model: str | None = None) -> list[RetrainRecord]:
        """The records kept, oldest first (of one model when named)."""
        with self._lock:
            return [r for r in self._records if model is None or r.model == model]

    def run_once(self, now: float) -> list[RetrainRecord]:
        """One check of every target at `now` (unix seconds); a failure of one is its record."""
        out = []
        for target in self.targets:
            try:
                record = self._check(target, now)
            except Exception as exc:  # a source, registry or training error is a record, not fatal
                log.warning("retrain %s: %s", target.name, exc, exc_info=log.isEnabledFor(logging.DEBUG))
                record = RetrainRecord(target.name, now, FAILED, f"{type(exc).__name__}: {exc}")
            log.info("retrain %s: %s (%s)", record.model, record.outcome, record.reason)
            out.append(record)
        with self._lock:
            self._records.extend(out)
        return out

    def _check(self, target: RetrainTarget, now: float) -> RetrainRecord:
        policy = target.policy
        versions = self.registry.versions(target.name) if target.name in self.registry.models() else []
        champion = next((v for v in versions if CHAMPION in v.aliases), None)
        signature = champion.signature if champion else target.signature
        if signature is None:
            newest = max(versions, key=lambda v: int(v.version)) if versions else None
            signature = newest.signature if newest else training.LATENCY_SIGNATURE
        span = (now - target.lookback_s, now)
        try:
            recent = target.source.window(*span)
        except SourceError as exc:
            return RetrainRecord(target.name, now, FAILED, f"recent window from {target.source.name}: {exc}",
                                 window=span)
        report, note = None, ""
        if champion is not None:
            report, note = _drift(target, champion, recent, signature)
        last = max((v.created_at for v in versions), default=None)
        trigger = policy.decide(now, last, report)
        drift_json = report.to_json() if report else None
        if trigger is None:
            why = _why_not(policy, now, last, report) + note
            return RetrainRecord(target.name, now, SKIPPED, why, drift=drift_json, window=span)
        try:
            outcome = training.retrain(
                self.registry, target.name, recent, signature, holdout_fraction=target.holdout_fraction,
                reason=trigger, tags={"retrain_source": target.source.name, "retrain_loop": "1"},
            )  # fmt: skip
        except (training.TrainingError, ValueError) as exc:  # DatasetError is a ValueError too
            return RetrainRecord(target.name, now, FAILED, f"cannot retrain on the recent window: {exc}",
                                 trigger=trigger, drift=drift_json, window=span)
        return RetrainRecord(
            target.name, now, PROMOTED if outcome.promoted else CHALLENGER_KEPT, outcome.reason,
            version=outcome.version.version, trigger=trigger, drift=drift_json,
            champion_mape=outcome.champion_mape, challenger_mape=outcome.challenger_mape, window=span,
        )  # fmt: skip


def _drift(
    target: RetrainTarget, champion: ModelVersion, recent: Dataset, signature: Signature
) -> tuple[DriftReport | None, str]:
    """(DriftReport, "") of `recent` against the champion's training window, or (None, why not)."""
    lineage = champion.lineage
    if lineage is None:
        return None, f"; no drift check: champion {champion.version} has no lineage"
    try:
        reference = target.source.window(lineage.window_start, lineage.window_end)
        return drift.detect(reference, recent, signature.feature_names), ""
    except (SourceError, ValueError) as exc:
        return None, (
            f"; no drift check: the champion's training window ({lineage.source}) is not readable "
            f"from {target.source.name}: {exc}"
        )


def _why_not(policy: RetrainPolicy, now: float, last: float | None, report: DriftReport | None) -> str:
    age = now - last if last is not None else 0.0
    parts = [f"{age:.0f} s since the last training"]
    if policy.interval_s is not None:
        parts.append(f"next scheduled in {max(policy.interval_s - age, 0):.0f} s")
    if report is None:
        parts.append("drift not measured")
    elif not report.drifted:
        parts.append("no drift")
    elif not policy.on_drift:
        parts.append(f"drift ({report.summary()}) but drift-triggered retraining is off")
    else:
        parts.append(
            f"drift ({report.summary()}) within the minimum gap of {policy.min_gap_s:.0f} s"
        )
    return "; ".join(parts)


@dataclass(frozen=True)
class DatasetWindows:
    """A WindowSource over a table of windows already recorded (e.g. the recorder's CSV, loaded
    again as it grows): the rows whose window starts in [start, end)."""

    dataset: Dataset
    name: str = "dataset"

    def window(self, start: float, end: float) -> Dataset:
        starts = self.dataset.column("window_start")
        rows = self.dataset.where((starts >= start) & (starts < end))
        if len(rows) == 0:
            raise EmptyWindow(f"{self.name}: no window starts between {start:.0f} and {end:.0f}")
        return rows


class RetrainRunner:
    """A daemon thread calling `retrainer.run_once(clock())` every `interval_s` until `stop()`."""

    def __init__(
        self, retrainer: Retrainer, interval_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"retrain check interval {interval_s}: must be > 0")
        self.retrainer = retrainer
        self.interval_s = interval_s
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            raise RuntimeError("the retrain loop is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="mlsysops-retrain", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Ends the loop after the check under way (training is not interrupted); idempotent."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.retrainer.run_once(self._clock())
            except Exception:  # run_once records per model; this guards the thread itself
                log.exception("retrain loop")
            self._stop.wait(self.interval_s)

