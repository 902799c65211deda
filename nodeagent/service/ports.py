"""What the service needs from the outside, as Protocols (implemented by nodeagent.telemetry).

The engine records its own metrics through `AgentMetricsPort`; tests pass `NullMetrics` or a
recording double instead of a Prometheus registry.
"""

from __future__ import annotations

from typing import Protocol


class AgentMetricsPort(Protocol):
    def observe_apply(self, seconds: float, writes: int, *, dry_run: bool, outcome: str) -> None: ...

    def set_drift(self, mechanism: str, drifted_knobs: int) -> None: ...

    def count_drift_event(self, mechanism: str) -> None: ...

    def count_error(self, kind: str) -> None: ...


class NullMetrics:
    """Metrics that go nowhere (telemetry disabled, or unit tests that do not look)."""

    def observe_apply(self, seconds: float, writes: int, *, dry_run: bool, outcome: str) -> None:
        return None

    def set_drift(self, mechanism: str, drifted_knobs: int) -> None:
        return None

    def count_drift_event(self, mechanism: str) -> None:
        return None

    def count_error(self, kind: str) -> None:
        return None
