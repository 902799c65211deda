"""A closed autonomic loop (monitor → analyse → plan → execute) that tunes running components'
knobs (e.g. a cgroup's CPU quota) between placements, with conflicts between plans resolved
explicitly, every plan and outcome recorded, and a rate limit so it never flaps.

Driven by `MapeLoop.step(now)`, so tests and bench/ml.py run it against an injected clock;
`MapeLoop.run(stop)` calls it every `tick_s` on the caller's thread until the event is set.

One step:
1. **monitor**: `Monitor.observe(now)` → per target (e.g. a component) its latest measurements
   (offered_rps, latency_p95_ms, the knob values it runs with, ...);
2. **analyse**: the measurements are smoothed per target and metric (an EWMA, `smoothing`), so a
   planner can size for the load rather than for its noise, and joined with the knobs' current
   values (as observed, else as last applied) into a `View`;
3. **plan**: every planner whose own interval has elapsed proposes `Change`s (target, knob,
   value, reason, priority, whether it fixes a QoS violation);
4. **resolve**: proposals for the same (target, knob) are ranked: a change that fixes a QoS
   violation beats one that does not (a saving, a tuning), then the higher priority, then the
   more conservative value (for cpu_quota_cores, the larger); the losers are recorded as
   overridden, with why. Proposals of the same value are recorded as agreeing;
5. **gate** (hysteresis per (target, knob), see `Knob`): no change within the dead band of the
   current value; at most one change per `min_interval_s` (a change that fixes a violation in
   the conservative direction is exempt: it is never wrong to act on it now); a change in the
   less conservative direction (scale-down) only after `down_after` consecutive rounds proposed
   it, to the most conservative of their values; a knob whose current value is unknown (not
   observed, never applied) is set at once. Held changes are recorded with the rule;
6. **execute**: `Executor.apply(change)` → Outcome; a failure (or an exception) is recorded and
   the change retried every `retry_s` until it succeeds or a newer plan supersedes it.

The history (bounded) holds every record: proposals, resolutions, holds, outcomes, retries; the
API and `apps explain` read it as JSON.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from controller.policies.learned import Goal, PredictorSource, Setting, checked_confidence, evaluate, trust

log = logging.getLogger(__name__)

PROPOSED, AGREED, OVERRIDDEN, HELD = "proposed", "agreed", "overridden", "held"
APPLIED, FAILED, SUPERSEDED = "applied", "failed", "superseded"
MONITOR_FAILED, PLANNER_FAILED = "monitor-failed", "planner-failed"

Observations = Mapping[str, Mapping[str, float]]  # target -> metric/knob -> value


@dataclass(frozen=True)
class Change:
    """A planner's proposal: set `knob` of `target` to `value`."""

    target: str
    knob: str
    value: float
    reason: str
    priority: int = 0
    fixes_violation: bool = False  # the target violates its QoS now and this change addresses it
    planner: str = ""  # filled in by the loop


@dataclass(frozen=True)
class Knob:
    """How one knob may change (knobs as data). Values are in the knob's unit."""

    name: str
    higher_is_conservative: bool = True  # more CPU is the safe side
    dead_band: float = 0.15  # |proposal - current| below this: no change
    min_interval_s: float = 30.0  # between two changes of one (target, knob)
    down_after: int = 3  # consecutive rounds proposing a scale-down before it happens
    retry_s: float = 10.0  # after a failed apply


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str = ""


@dataclass(frozen=True)
class Record:
    """One entry of the loop's history."""

    at: float
    event: str
    target: str
    knob: str
    value: float | None
    planner: str
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "event": self.event,
            "target": self.target,
            "knob": self.knob,
            "value": self.value,
            "planner": self.planner,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class View:
    """What the planners see: the raw observations, their smoothed values, the knobs' values."""

    now: float
    observations: Observations
    smoothed: Observations
    current: Mapping[tuple[str, str], float]

    def value(self, target: str, knob: str) -> float | None:
        return self.current.get((target, knob))


class Monitor(Protocol):
    def observe(self, now: float) -> Observations: ...


class Executor(Protocol):
    def apply(self, change: Change) -> Outcome: ...


class Planner(Protocol):
    name: str
    interval_s: float

    def plan(self, view: View) -> Sequence[Change]: ...


@dataclass
class _KnobState:
    last_change_at: float | None = None
    last_applied: float | None = None
    down_streak: list[float] = field(default_factory=list)
    pending: Change | None = None  # failed, to retry
    retry_at: float = 0.0
    attempts: int = 0


class MapeLoop:
    def __init__(
        self,
        monitor: Monitor,
        planners: Sequence[Planner],
        executor: Executor,
        knobs: Sequence[Knob] = (),
        *,
        default_knob: Knob | None = None,
        smoothing: float = 0.3,
        history: int = 2000,
    ) -> None:
        """`smoothing` is the EWMA weight of a new observation (1: no smoothing)."""
        if len({p.name for p in planners}) != len(planners):
            raise ValueError("planner names must be unique")
        self.monitor = monitor
        self.planners = list(planners)
        self.executor = executor
        self.knobs = {k.name: k for k in knobs}
        self.default_knob = default_knob or Knob("")
        self.smoothing = smoothing
        self.history: deque[Record] = deque(maxlen=history)
        self._next_run: dict[str, float] = {}
        self._smoothed: dict[str, dict[str, float]] = {}
        self._state: dict[tuple[str, str], _KnobState] = {}
        self._lock = threading.Lock()  # step() and history readers (the API) on other threads

    def knob(self, name: str) -> Knob:
        return self.knobs.get(name) or replace(self.default_knob, name=name)

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [r.to_json() for r in self.history]

    # ------------------------------------------------------------------ one round

    def step(self, now: float) -> list[Record]:
        """One monitor → analyse → plan → execute round; returns the records it added."""
        with self._lock:
            out: list[Record] = []
            try:
                observations = self.monitor.observe(now)
            except Exception as exc:  # no data this round: nothing to plan on, nothing lost
                out.append(Record(now, MONITOR_FAILED, "", "", None, "", f"{type(exc).__name__}: {exc}"))
                return self._keep(out)
            view = self._analyse(now, observations)
            proposals = self._plan(view, out)
            decided: set[tuple[str, str]] = set()
            for key, group in _by_key(proposals).items():
                winner = self._resolve(now, group, out)
                decided.add(key)
                self._gate_and_execute(now, winner, view.value(*key), out)
            for key, state in self._state.items():  # failed changes no newer plan replaced
                if key not in decided and state.pending is not None and now >= state.retry_at:
                    self._execute(now, state.pending, state, out, retry=True)
            return self._keep(out)

    def run(self, stop: threading.Event, *, tick_s: float = 1.0,
            clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        """Step every `tick_s` until `stop` is set (on the caller's thread: start one for it)."""
        while not stop.is_set():
            try:
                self.step(clock())
            except Exception:  # a bug in a planner's or executor's adapter must not end the loop
                log.exception("MAPE step failed")
            stop.wait(tick_s)

    def _keep(self, records: list[Record]) -> list[Record]:
        self.history.extend(records)
        return records

    def _analyse(self, now: float, observations: Observations) -> View:
        a = self.smoothing
        for target, values in observations.items():
            mine = self._smoothed.setdefault(target, {})
            for metric, v in values.items():
                if math.isfinite(v):
                    mine[metric] = v if metric not in mine else a * v + (1 - a) * mine[metric]
        current: dict[tuple[str, str], float] = {}
        for (target, knob), state in self._state.items():
            if state.last_applied is not None:
                current[(target, knob)] = state.last_applied
        for target, values in observations.items():  # what runs, as observed, wins
            for name in values:
                if name in self.knobs:
                    current[(target, name)] = values[name]
        smoothed = {t: dict(v) for t, v in self._smoothed.items()}
        return View(now, observations, smoothed, current)

    def _plan(self, view: View, out: list[Record]) -> list[Change]:
        proposals: list[Change] = []
        for p in self.planners:
            if view.now < self._next_run.get(p.name, -math.inf):
                continue
            self._next_run[p.name] = view.now + p.interval_s
            try:
                changes = [replace(c, planner=p.name) for c in p.plan(view)]
            except Exception as exc:
                out.append(
                    Record(view.now, PLANNER_FAILED, "", "", None, p.name, f"{type(exc).__name__}: {exc}")
                )
                continue
            for c in changes:
                out.append(Record(view.now, PROPOSED, c.target, c.knob, c.value, p.name, c.reason))
            proposals.extend(changes)
        return proposals

    def _resolve(self, now: float, group: Sequence[Change], out: list[Record]) -> Change:
        """The winning proposal for one (target, knob); the others recorded with why they lost."""
        knob = self.knob(group[0].knob)
        sign = 1.0 if knob.higher_is_conservative else -1.0
        order = {p.name: i for i, p in enumerate(self.planners)}
        ranked = sorted(group, key=lambda c: (not c.fixes_violation, -c.priority, -sign * c.value,
                                              order.get(c.planner, 0)))  # fmt: skip
        winner = ranked[0]
        for loser in ranked[1:]:
            if loser.value == winner.value:
                event, why = AGREED, f"agrees with {winner.planner}"
            elif winner.fixes_violation and not loser.fixes_violation:
                event, why = OVERRIDDEN, f"{winner.planner}'s change fixes a QoS violation; this one does not"
            elif winner.priority != loser.priority:
                event, why = OVERRIDDEN, f"{winner.planner}'s priority {winner.priority} > {loser.priority}"
            else:
                event, why = (
                    OVERRIDDEN,
                    f"equal rank: {winner.planner}'s {winner.value:g} is more conservative",
                )
            out.append(Record(now, event, loser.target, loser.knob, loser.value, loser.planner,
                              f"{why} (kept {winner.value:g}); {loser.reason}"))  # fmt: skip
        return winner

    def _gate_and_execute(self, now: float, change: Change, current: float | None, out: list[Record]) -> None:
        knob = self.knob(change.knob)
        state = self._state.setdefault((change.target, change.knob), _KnobState())

        def hold(why: str) -> None:
            out.append(Record(now, HELD, change.target, change.knob, change.value, change.planner, why))

        if state.pending is not None and state.pending.value != change.value:
            out.append(Record(now, SUPERSEDED, change.target, change.knob, state.pending.value,
                              state.pending.planner, f"a failed change replaced by {change.planner}'s "
                              f"{change.value:g}"))  # fmt: skip
            state.pending = None
        if current is None:
            self._execute(now, change, state, out)
            return
        delta = (change.value - current) * (1.0 if knob.higher_is_conservative else -1.0)
        if abs(change.value - current) < knob.dead_band:
            state.down_streak.clear()
            hold(
                f"within the dead band ({abs(change.value - current):g} < {knob.dead_band:g} of {current:g})"
            )
            return
        urgent = delta > 0 and change.fixes_violation
        since = now - state.last_change_at if state.last_change_at is not None else math.inf
        if delta < 0:
            state.down_streak.append(change.value)
            if len(state.down_streak) < knob.down_after:
                hold(f"scale-down {len(state.down_streak)}/{knob.down_after} consecutive rounds")
                return
            safest = max(state.down_streak) if knob.higher_is_conservative else min(state.down_streak)
            change = replace(change, value=safest, reason=f"{change.reason} (after {knob.down_after} "
                             f"consecutive rounds, the most conservative of them)")  # fmt: skip
        else:
            state.down_streak.clear()
        if since < knob.min_interval_s and not urgent:
            hold(f"rate limit: last change {since:g}s ago, at most one per {knob.min_interval_s:g}s")
            return
        self._execute(now, change, state, out)

    def _execute(
        self, now: float, change: Change, state: _KnobState, out: list[Record], *, retry: bool = False
    ) -> None:
        try:
            outcome = self.executor.apply(change)
        except Exception as exc:
            outcome = Outcome(False, f"{type(exc).__name__}: {exc}")
        state.attempts = state.attempts + 1 if retry else 1
        tried = f" (retry {state.attempts - 1})" if retry else ""
        if outcome.ok:
            state.last_applied, state.last_change_at = change.value, now
            state.pending, state.down_streak = None, []
            message = f": {outcome.message}" if outcome.message else ""
            out.append(Record(now, APPLIED, change.target, change.knob, change.value, change.planner,
                              f"{change.reason}{tried}{message}"))  # fmt: skip
        else:
            knob = self.knob(change.knob)
            state.pending, state.retry_at = change, now + knob.retry_s
            out.append(Record(now, FAILED, change.target, change.knob, change.value, change.planner,
                              f"{outcome.message}{tried}; retrying in {knob.retry_s:g}s"))  # fmt: skip


def _by_key(changes: Sequence[Change]) -> dict[tuple[str, str], list[Change]]:
    out: dict[tuple[str, str], list[Change]] = {}
    for c in changes:
        out.setdefault((c.target, c.knob), []).append(c)
    return out


# ---------------------------------------------------------------------------- planners


class LearnedQuotaPlanner:
    """Sizes each target's CPU quota for its (smoothed) offered load with the champion model of
    its QoS metric: the least quota (in `step` cores, up to the target's cpus and `max_cores`)
    predicted to meet the goal with the model's hold-out margin (controller.policies.learned).
    An untrustworthy model proposes nothing (the reactive planner still guards the target)."""

    def __init__(
        self,
        goals: Mapping[str, Goal],
        predictors: PredictorSource,
        *,
        name: str = "learned-quota",
        interval_s: float = 30.0,
        knob: str = "cpu_quota_cores",
        step: float = 0.1,
        max_cores: float = 8.0,
        max_holdout_error: float = 0.25,
        margin_factor: float = 1.0,
        confidence: float = 0.9,
        priority: int = 0,
    ) -> None:
        self.goals = dict(goals)
        self.confidence = checked_confidence(confidence)
        self.predictors = predictors
        self.name, self.interval_s, self.knob = name, interval_s, knob
        self.step, self.max_cores = step, max_cores
        self.max_holdout_error, self.margin_factor, self.priority = max_holdout_error, margin_factor, priority
        self.skipped: dict[str, str] = {}  # target -> why it proposed nothing last time

    def plan(self, view: View) -> list[Change]:
        out = []
        for target, goal in self.goals.items():
            change = self._one(view, target, goal)
            if isinstance(change, str):
                self.skipped[target] = change
            else:
                self.skipped.pop(target, None)
                out.append(change)
        return out

    def _one(self, view: View, target: str, goal: Goal) -> Change | str:
        smoothed = view.smoothed.get(target, {})
        rps = smoothed.get("offered_rps")
        if rps is None:
            return "no offered_rps observed"
        model = trust(goal, self.predictors.champion(goal.metric), max_error=self.max_holdout_error,
                      margin_factor=self.margin_factor, confidence=self.confidence)  # fmt: skip
        if isinstance(model, str):
            return model
        cpus = int(smoothed.get("cpus", math.ceil(self.max_cores)))
        runtime = "runsc" if smoothed.get("runtime_gvisor", 0.0) >= 0.5 else "runc"
        top = min(float(cpus), self.max_cores)
        steps = [round(k * self.step, 6) for k in range(1, math.floor(top / self.step + 1e-9) + 1)]
        options = [(target, Setting(q, cpus, runtime)) for q in steps]
        if not options:
            return "no quota step fits"
        try:
            evaluated = evaluate([model], options, rps)
        except Exception as exc:
            return f"prediction failed: {type(exc).__name__}: {exc}"
        chosen = next((e for e in evaluated if e.meets), None)
        observed = view.observations.get(target, {}).get(goal.metric)
        violated = observed is not None and not goal.met(observed)
        current = view.value(target, self.knob)
        if chosen is None:
            value = steps[-1]
            reason = f"no quota predicted to meet {goal.describe()} at {rps:.4g} req/s: the most allowed"
        else:
            value = chosen.setting.quota_cores
            reason = (f"{model.ref} predicts {goal.metric} {chosen.predictions[0]:.3g} at {value:g} cores, "
                      f"{rps:.4g} req/s (smoothed), margin {model.margin:.3f} ({model.basis}): the least "
                      f"quota meeting {goal.describe()}")  # fmt: skip
        fixes = violated and current is not None and value > current
        return Change(target, self.knob, value, reason, self.priority, fixes)


class QosViolationPlanner:
    """The reactive guard: when a target's observed QoS metric has missed its goal for
    `consecutive` rounds, raise its quota by `step` (up to `max_value`); no model needed. The
    count restarts after each raise, so it waits to see the effect of one before the next."""

    def __init__(
        self,
        goals: Mapping[str, Goal],
        *,
        name: str = "qos-reactive",
        interval_s: float = 10.0,
        knob: str = "cpu_quota_cores",
        step: float = 0.25,
        max_value: float = 8.0,
        consecutive: int = 2,
        priority: int = 10,
    ) -> None:
        self.goals = dict(goals)
        self.name, self.interval_s, self.knob = name, interval_s, knob
        self.step, self.max_value, self.consecutive, self.priority = step, max_value, consecutive, priority
        self._misses: dict[str, int] = {}

    def plan(self, view: View) -> list[Change]:
        out = []
        for target, goal in self.goals.items():
            observed = view.observations.get(target, {}).get(goal.metric)
            if observed is None or goal.met(observed):
                self._misses[target] = 0
                continue
            misses = self._misses[target] = self._misses.get(target, 0) + 1
            current = view.value(target, self.knob)
            if misses < self.consecutive or current is None or current >= self.max_value:
                continue
            self._misses[target] = 0  # see the effect before raising again
            value = round(min(current + self.step, self.max_value), 6)
            reason = (
                f"{goal.metric} {observed:.3g} misses {goal.describe()} for {misses} rounds: +{self.step:g}"
            )
            out.append(Change(target, self.knob, value, reason, self.priority, True))
        return out
