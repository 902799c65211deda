"""The agent's own metrics: how applies go, how many writes they make, drift and errors.

Event-driven (incremented by the apply engine and the drift checker), so they are ordinary
client_python metrics registered in the registry the agent passes in, never the global one.
"""

from __future__ import annotations

from prometheus_client.metrics import Counter, Gauge, Histogram
from prometheus_client.registry import CollectorRegistry

from nodeagent.telemetry.base import PREFIX

OUTCOMES = ("ok", "invalid", "failed")

# An apply is a handful of small sysfs/cgroupfs writes: most take well under a millisecond, a
# whole profile with netlink a few tens. The buckets resolve the 2 ms and 30 ms targets.
APPLY_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 1.0, 5.0)

APPLY_DURATION = PREFIX + "apply_duration_seconds"
WRITES = PREFIX + "writes"
DRIFTED_KNOBS = PREFIX + "drifted_knobs"
DRIFT_EVENTS = PREFIX + "drift_events"
ERRORS = PREFIX + "errors"

#: Family names (as collected, without `_total`) the "agent" collector switch hides.
AGENT_FAMILIES = frozenset({APPLY_DURATION, WRITES, DRIFTED_KNOBS, DRIFT_EVENTS, ERRORS})


class AgentMetrics:
    """The agent's own metrics, registered in the given registry (never the global default)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._apply = Histogram(
            APPLY_DURATION,
            "Duration of Apply requests, validation to last write.",
            ["dry_run", "outcome"],
            buckets=APPLY_BUCKETS,
            registry=registry,
        )
        self._writes = Counter(
            WRITES, "Knob writes performed on the host (dry runs excluded).", registry=registry
        )
        self._drifted = Gauge(
            DRIFTED_KNOBS,
            "Knobs whose actual value differs from the desired one at the last check.",
            ["mechanism"],
            registry=registry,
        )
        self._drift_events = Counter(
            DRIFT_EVENTS,
            "Knobs found drifted (one per knob and check that found it).",
            ["mechanism"],
            registry=registry,
        )
        self._errors = Counter(ERRORS, "Errors reported by the agent, by kind.", ["kind"], registry=registry)
        # Every child created up front: zeros are exported, so rate() works from the first
        # scrape, and observe_apply() picks its child from a dict instead of calling labels().
        self._apply_children = {
            (dry_run, outcome): self._apply.labels("true" if dry_run else "false", outcome)
            for dry_run in (False, True)
            for outcome in OUTCOMES
        }

    def observe_apply(self, seconds: float, writes: int, *, dry_run: bool, outcome: str) -> None:
        """Record one Apply. `writes` counts only when not a dry run (nothing is written then)."""
        child = self._apply_children.get((bool(dry_run), outcome))
        if child is None:
            raise ValueError(f"outcome must be one of {', '.join(OUTCOMES)}, not {outcome!r}")
        if seconds < 0 or writes < 0:
            raise ValueError("seconds and writes must not be negative")
        child.observe(seconds)
        if not dry_run and writes:
            self._writes.inc(writes)

    def set_drift(self, mechanism: str, drifted_knobs: int) -> None:
        self._drifted.labels(mechanism).set(drifted_knobs)

    def count_drift_event(self, mechanism: str) -> None:
        self._drift_events.labels(mechanism).inc()

    def count_error(self, kind: str) -> None:
        self._errors.labels(kind).inc()
