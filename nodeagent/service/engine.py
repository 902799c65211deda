"""The apply engine: validate → plan → journal → write → (undo), plus reset, drift and state.

Mechanisms only say what a knob should hold and how to write it (nodeagent/mechanisms/base.py);
this module owns the life cycle, TuneD-style:

- the whole profile is validated before anything is read or written (all-or-nothing);
- each knob is read and written only when it differs, so a repeated apply writes nothing;
- the original of every knob is journaled durably before its first write;
- a failed write undoes what this apply wrote, newest first, through the mechanism's order();
- applies add up: a knob set by an earlier profile keeps its value until a Reset restores the
  originals (a mechanism's desired knobs may depend on the host, e.g. a v1 cpuset copied from
  its parent only when a group is created, so "absent from this plan" does not mean "undo it");
- one lock serialises the writers (applies, resets, drift checks), and is never held while a
  request is validated: limits (service/limits.py) and every mechanism's validate() run before
  it is taken, so a huge or hostile request cannot stall other callers or the watchdog. A plan
  whose validation overlapped another writer's writes is validated again under the lock (on a
  host that no longer changes under it), so a plan is never diffed on a stale snapshot;
- reads (state(), and the inventory, which never comes here) take no lock: they see the
  committed state swapped in one assignment and the host as it is.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from nodeagent.errors import HostError, NodeAgentError, Unsupported
from nodeagent.mechanisms.base import Mechanism, Plan, Snapshot, Value, Write
from nodeagent.service.desired import DesiredState, DesiredStore
from nodeagent.service.events import Event, EventBus, EventKind
from nodeagent.service.journal import Journal
from nodeagent.service.limits import RequestLimits, check_profile, clean_label
from nodeagent.service.ports import AgentMetricsPort, NullMetrics
from nodeagent.service.profile import copy_json, split_profile
from nodeagent.service.registry import MechanismSet
from nodeagent.service.reports import ApplyResult, DriftReport, KnobView, ResetResult, StateReport

log = logging.getLogger(__name__)


class Engine:
    def __init__(
        self,
        mechanisms: MechanismSet,
        journal: Journal,
        store: DesiredStore,
        events: EventBus,
        metrics: AgentMetricsPort | None = None,
        clock: Callable[[], float] = time.time,
        limits: RequestLimits | None = None,
    ) -> None:
        self._limits = limits or RequestLimits()
        self._mechanisms = mechanisms
        self._journal = journal
        self._store = store
        self._events = events
        self._metrics: AgentMetricsPort = metrics or NullMetrics()
        self._clock = clock
        self._lock = threading.Lock()
        self._epoch = 0  # writing sections so far: a plan validated across one is stale
        self._max_hold_s = 0.0
        self._state = store.load()
        self._drifted: set[tuple[str, str]] = set()
        self._last_drift_check: float | None = None

    # ------------------------------------------------------------------ apply

    def apply(self, profile: Mapping[str, Any], *, dry_run: bool = False, requester: str = "") -> ApplyResult:
        """Make the node match `profile` (a Profile as a JSON object); see the module docstring."""
        started = time.perf_counter()
        outcome, performed = "invalid", 0
        requester = clean_label(requester, self._limits)
        try:
            check_profile(profile, self._limits)
            epoch = self._epoch
            plans = self._validate(profile)  # outside the lock: bounded by the limits, yet no writer waits
            with self._held():
                if self._epoch != epoch:  # written meanwhile: the snapshots may be stale
                    plans = self._validate(profile)
                outcome = "failed"
                writes = self._plan(plans)
                if not dry_run:
                    self._epoch += 1
                    self._journal.record(writes)
                    performed = self._execute(writes)
                    desired = {name: plan.desired for name, plan in plans.items()}
                    self._commit(profile, desired, performed, requester)
                outcome = "ok"
                return ApplyResult(tuple(writes), performed, self._state.generation, _ms_since(started))
        except Exception as exc:
            if not isinstance(exc, NodeAgentError):
                outcome = "failed"  # a plugin bug, not the caller's mistake
            self._report_failure("apply", outcome, exc)
            raise
        finally:
            self._metrics.observe_apply(
                time.perf_counter() - started, performed, dry_run=dry_run, outcome=outcome
            )

    @contextlib.contextmanager
    def _held(self) -> Iterator[None]:
        """The engine lock, measuring how long it is held (max_lock_hold_s)."""
        with self._lock:
            taken = time.perf_counter()
            try:
                yield
            finally:
                self._max_hold_s = max(self._max_hold_s, time.perf_counter() - taken)

    @property
    def max_lock_hold_s(self) -> float:
        """The longest the engine lock was held so far (what a waiting caller or the watchdog saw)."""
        return self._max_hold_s

    def _validate(self, profile: Mapping[str, Any]) -> dict[str, Plan]:
        plans: dict[str, Plan] = {}
        for name, field, section in split_profile(profile):
            plans[name] = self._mechanisms.require(name, field).validate(section, field)
        return plans

    def _plan(self, plans: Mapping[str, Plan]) -> list[Write]:
        """Ordered writes that take the node from its actual state to the plans' desired knobs.

        Each diff reads with its plan's snapshot: still true, as no writer ran since validate()
        (apply() validates again under the lock otherwise), and cheaper than reading the host again."""
        writes: list[Write] = []
        for name in self._mechanisms.in_order(plans):
            writes.extend(self._diff(name, plans[name].desired, plans[name].snapshot))
        return writes

    def _diff(self, name: str, target: Mapping[str, Value], snapshot: Snapshot | None = None) -> list[Write]:
        """The mechanism's ordered writes for the knobs of `target` whose actual value differs.

        order() may add writes a change needs (e.g. a v1 cpuset copied from the parent into a
        new group): they are planned, journaled and undone like the others.
        """
        mechanism = self._loaded(name)
        actual = mechanism.read(target, snapshot)
        changed = [Write(name, k, actual.get(k), v) for k, v in target.items() if actual.get(k) != v]
        return mechanism.order(changed) if changed else []

    def _execute(self, writes: Sequence[Write]) -> int:
        """Perform writes in order; on a failure undo the ones done, then re-raise as HostError."""
        done: list[Write] = []
        for write in writes:
            try:
                self._loaded(write.mechanism).write(write)
            except Exception as exc:
                cause = _as_host_error(write, exc)
                self._undo(done, cause)
                raise cause from exc
            done.append(write)
        return len(done)

    def _undo(self, done: Sequence[Write], cause: HostError) -> None:
        failures: list[str] = []
        for name, inverses in _group_by_mechanism(w.inverse() for w in reversed(done)):
            mechanism = self._loaded(name)
            for write in mechanism.order(inverses):
                try:
                    mechanism.write(write)
                except Exception as exc:
                    failures.append(f"{write.mechanism}:{write.key} ({exc})")
        if failures:
            self._events.publish(
                Event(
                    EventKind.ERROR,
                    f"undo after {cause} failed for {', '.join(failures)}; "
                    "the journal keeps their originals: Reset restores them",
                )
            )

    def _commit(
        self, profile: Mapping[str, Any], desired: dict[str, dict[str, Value]], performed: int, requester: str
    ) -> None:
        changed = profile != self._state.profile
        if not changed and not performed:
            return  # a repeated apply: nothing to persist
        knobs = {name: dict(values) for name, values in self._state.knobs.items()}
        for name, values in desired.items():  # applies add up: earlier knobs stay desired
            knobs.setdefault(name, {}).update(values)
        state = DesiredState(
            profile=copy_json(profile) if changed else self._state.profile,
            knobs=knobs,
            generation=self._state.generation + (1 if changed else 0),
            last_apply=self._clock(),
        )
        self._store.save(state)
        self._state = state
        self._drifted.clear()
        log.info(
            "applied requester=%s writes=%d generation=%d", requester or "-", performed, state.generation
        )
        self._events.publish(
            Event(
                EventKind.APPLIED,
                f"{performed} writes",
                generation=state.generation,
                details={"writes": str(performed), "requester": requester},
            )
        )

    # ------------------------------------------------------------------ reset

    def reset(self, *, dry_run: bool = False) -> ResetResult:
        """Restore every journaled original and forget the desired profile.

        Best effort: a knob that cannot be restored (its write fails, its mechanism cannot
        read or is not loaded) does not stop the others. Such knobs keep their originals in
        the journal, so a later Reset can retry, and the call raises HostError naming them.
        """
        with self._held():
            writes, unrestorable = self._restore_plan()
            if dry_run:
                return ResetResult(tuple(writes), 0)
            self._epoch += 1
            failed: list[str] = []
            kept: set[tuple[str, str]] = set()
            for write in writes:
                try:
                    self._loaded(write.mechanism).write(write)
                except Exception as exc:
                    failed.append(f"{write.mechanism}:{write.key} ({exc})")
                    kept.add((write.mechanism, write.key))
            originals = self._journal.originals()
            self._journal.forget(k for k in originals if k[0] not in unrestorable and k not in kept)
            self._state = DesiredState(generation=self._state.generation)
            self._store.save(self._state)
            self._drifted.clear()
            performed = len(writes) - len(kept)
            self._events.publish(Event(EventKind.RESET, f"{performed} originals restored"))
            problems = failed + [f"{name}:* ({reason})" for name, reason in unrestorable.items()]
            if problems:
                error = HostError(", ".join(problems), "not restored; their originals stay in the journal")
                self._report_failure("reset", "failed", error)
                raise error
            return ResetResult(tuple(writes), performed)

    def _restore_plan(self) -> tuple[list[Write], dict[str, str]]:
        """Writes back to the originals, last mechanism first; and the mechanisms that cannot
        plan them now (name -> why)."""
        by_mechanism: dict[str, dict[str, Value]] = {}
        for (name, key), original in self._journal.originals().items():
            by_mechanism.setdefault(name, {})[key] = original
        writes: list[Write] = []
        unrestorable: dict[str, str] = {}
        for name in reversed(self._mechanisms.in_order(by_mechanism)):
            if self._mechanisms.loaded(name) is None:
                unrestorable[name] = "mechanism not loaded"
                continue
            try:
                writes.extend(self._diff(name, by_mechanism[name]))
            except NodeAgentError as exc:
                unrestorable[name] = str(exc)
        return writes, unrestorable

    # ------------------------------------------------------------------ re-adopt

    def readopt(self) -> int:
        """At start-up, take over what an earlier run applied (TuneD's rollback=not_on_exit):
        verify every desired knob and write back those that differ (a reboot, an external
        change while no agent ran). The journal still holds the originals, so Reset restores
        them as if the agent had never stopped. Returns the writes performed; a knob that
        cannot be re-adopted is reported (ERROR event) and left for drift checks, never fatal.
        """
        with self._held():
            self._epoch += 1
            writes: list[Write] = []
            for name in self._mechanisms.in_order(self._state.knobs):
                if self._mechanisms.loaded(name) is None:
                    continue
                try:
                    writes.extend(self._diff(name, self._state.knobs[name]))
                except NodeAgentError as exc:
                    self._report_failure("readopt", "failed", exc)
            performed = 0
            if writes:
                try:
                    self._journal.record(writes)
                    performed = self._execute(writes)
                except NodeAgentError as exc:
                    self._report_failure("readopt", "failed", exc)
            knobs = sum(len(v) for v in self._state.knobs.values())
            if knobs:
                log.info(
                    "readopted generation=%d knobs=%d rewritten=%d", self._state.generation, knobs, performed
                )
            return performed

    # ------------------------------------------------------------------ drift

    def check_drift(self, *, enforce: bool = False) -> DriftReport:
        """Compare desired with actual; report new drift once per knob, and correct it if `enforce`."""
        with self._held():
            drifted: list[Write] = []
            for name in self._mechanisms.in_order(self._state.knobs):
                if self._mechanisms.loaded(name) is None:
                    continue
                try:
                    found = self._diff(name, self._state.knobs[name])
                except NodeAgentError as exc:
                    self._report_failure("drift", "failed", exc)
                    continue
                self._metrics.set_drift(name, len(found))
                drifted.extend(found)
            self._last_drift_check = self._clock()
            for write in drifted:
                if (write.mechanism, write.key) not in self._drifted:
                    self._metrics.count_drift_event(write.mechanism)
                    self._events.publish(_knob_event(EventKind.DRIFT, write, self._state.generation))
            self._drifted = {(w.mechanism, w.key) for w in drifted}
            if enforce and drifted:
                self._enforce(drifted)
            return DriftReport(tuple(drifted), enforce and bool(drifted))

    def _enforce(self, drifted: Sequence[Write]) -> None:
        self._epoch += 1
        try:
            self._journal.record(drifted)
            self._execute(drifted)
        except NodeAgentError as exc:
            self._report_failure("enforce", "failed", exc)
            return
        for write in drifted:
            self._events.publish(_knob_event(EventKind.ENFORCED, write, self._state.generation))
            self._metrics.set_drift(write.mechanism, 0)
        self._drifted.clear()

    # ------------------------------------------------------------------ state

    def state(self) -> StateReport:
        """Desired, actual and original value of every knob the agent manages or has touched.

        Takes no lock (a reader never waits for a writer): the committed state is read once
        (swapped whole by a writer), the journal's originals are a copy, and the actual values
        are what the host holds now, mid-apply or not."""
        state = self._state
        desired = state.knobs
        originals = self._journal.originals()
        keys: dict[str, dict[str, None]] = {}
        for name, values in desired.items():
            keys.setdefault(name, {}).update(dict.fromkeys(values))
        for name, key in originals:
            keys.setdefault(name, {})[key] = None
        views: list[KnobView] = []
        for name in self._mechanisms.in_order(keys):
            actual = self._read_for_state(name, keys[name])
            for key in keys[name]:
                want = desired.get(name, {})
                views.append(
                    KnobView(
                        name,
                        key,
                        want.get(key),
                        key in want,
                        actual.get(key),
                        originals.get((name, key)),
                        (name, key) in originals,
                    )
                )
        return StateReport(
            state.profile,
            state.generation,
            tuple(views),
            state.last_apply,
            self._last_drift_check,
        )

    def _read_for_state(self, name: str, keys: Iterable[str]) -> Mapping[str, Value]:
        """Actual values for GetState; a mechanism that cannot read shows them as unknown
        (absent) rather than failing the whole report."""
        mechanism = self._mechanisms.loaded(name)
        if mechanism is None:
            return {}
        try:
            return mechanism.read(keys)
        except NodeAgentError as exc:
            log.warning("state: mechanism=%s cannot read: %s", name, exc)
            return {}

    @property
    def generation(self) -> int:
        return self._state.generation

    def desired_profile(self) -> Mapping[str, Any]:
        """The profile last applied; safe from any thread without the lock (telemetry's sampler
        calls it while an apply runs): `_state` is swapped in one assignment and a committed
        profile is a deep copy nobody mutates, so a caller sees the old or the new one whole."""
        return self._state.profile

    def responsive(self, timeout: float) -> bool:
        """True when the engine lock can be taken within `timeout` (the systemd watchdog's check)."""
        if not self._lock.acquire(timeout=timeout):
            return False
        self._lock.release()
        return True

    # ------------------------------------------------------------------ helpers

    def _loaded(self, name: str) -> Mechanism:
        mechanism = self._mechanisms.loaded(name)
        if mechanism is None:
            raise Unsupported(f"mechanism {name!r} is not loaded")
        return mechanism

    def _report_failure(self, operation: str, outcome: str, exc: Exception) -> None:
        if outcome == "invalid":
            return  # the caller's mistake: answered, not an agent error
        self._metrics.count_error(operation)
        self._events.publish(
            Event(EventKind.ERROR, f"{operation} failed: {exc}", details={"operation": operation})
        )


def _as_host_error(write: Write, exc: Exception) -> HostError:
    if isinstance(exc, HostError):
        return exc
    return HostError(f"{write.mechanism}:{write.key}", f"{type(exc).__name__}: {exc}")


def _group_by_mechanism(writes: Iterable[Write]) -> list[tuple[str, list[Write]]]:
    """Consecutive-agnostic grouping that keeps the order of first appearance."""
    groups: dict[str, list[Write]] = {}
    for write in writes:
        groups.setdefault(write.mechanism, []).append(write)
    return list(groups.items())


def _knob_event(kind: EventKind, write: Write, generation: int) -> Event:
    return Event(
        kind,
        f"{write.key}: actual {write.before!r}, desired {write.after!r}",
        mechanism=write.mechanism,
        key=write.key,
        generation=generation,
        details={"actual": str(write.before), "desired": str(write.after)},
    )


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0
