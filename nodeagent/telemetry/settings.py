"""Collector settings: which collectors run and how often, as plain validated data.

Kept pure (no threads, no I/O) so the rules the API enforces, an unknown collector or an
absurd interval is rejected and nothing changes, are specified by cheap tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from nodeagent.errors import InvalidSpec

MIN_INTERVAL_MS = 100
MAX_INTERVAL_MS = 3_600_000


@dataclass(frozen=True)
class CollectorSettings:
    """One collector's switch and sampling interval."""

    name: str  # "cpu", "memory", "network", "cgroups", "cpufreq", "agent", "workloads"
    enabled: bool
    interval_ms: int  # MIN_INTERVAL_MS .. MAX_INTERVAL_MS


# Intervals of seconds, not milliseconds: an idle agent must stay far below 0.3 % of a CPU, and
# Prometheus rarely scrapes more often than every 15 s. Kernel counters (cpu, network) are
# cumulative, so a slower sample loses no information, only resolution.
DEFAULT_SETTINGS: tuple[CollectorSettings, ...] = (
    CollectorSettings("cpu", True, 10_000),
    CollectorSettings("memory", True, 10_000),
    CollectorSettings("network", True, 10_000),
    CollectorSettings("cgroups", True, 10_000),
    CollectorSettings("cpufreq", True, 15_000),
    CollectorSettings("agent", True, 15_000),
    CollectorSettings("workloads", True, 10_000),
)

COLLECTOR_NAMES: tuple[str, ...] = tuple(s.name for s in DEFAULT_SETTINGS)


def merge_settings(
    current: Sequence[CollectorSettings], updates: Sequence[CollectorSettings], field: str = "collectors"
) -> list[CollectorSettings]:
    """Return `current` with `updates` applied, in the canonical collector order.

    All-or-nothing: every update is checked before anything is merged, and the first bad one
    raises InvalidSpec naming it (e.g. `collectors[1].interval_ms`).
    """
    seen: set[str] = set()
    for i, update in enumerate(updates):
        _check(update, f"{field}[{i}]")
        if update.name in seen:
            raise InvalidSpec(f"{field}[{i}].name", f"collector {update.name!r} is listed twice")
        seen.add(update.name)
    by_name = {s.name: s for s in current}
    by_name.update({u.name: replace(u) for u in updates})
    return [by_name[name] for name in COLLECTOR_NAMES if name in by_name]


def _check(update: object, field: str) -> None:
    if not isinstance(update, CollectorSettings):
        raise InvalidSpec(field, f"must be CollectorSettings, not {type(update).__name__}")
    if update.name not in COLLECTOR_NAMES:
        raise InvalidSpec(
            f"{field}.name", f"unknown collector {update.name!r} (known: {', '.join(COLLECTOR_NAMES)})"
        )
    if not isinstance(update.enabled, bool):
        raise InvalidSpec(f"{field}.enabled", "must be true or false")
    interval = update.interval_ms
    if isinstance(interval, bool) or not isinstance(interval, int):
        raise InvalidSpec(f"{field}.interval_ms", "must be an integer number of milliseconds")
    if not MIN_INTERVAL_MS <= interval <= MAX_INTERVAL_MS:
        raise InvalidSpec(
            f"{field}.interval_ms",
            f"{interval} ms is out of range ({MIN_INTERVAL_MS} .. {MAX_INTERVAL_MS} ms)",
        )
