"""Collector settings: defaults, merging, and rejection of bad updates with the field named."""

from __future__ import annotations

import pytest

from nodeagent.errors import InvalidSpec
from nodeagent.telemetry import DEFAULT_SETTINGS, CollectorSettings
from nodeagent.telemetry.settings import COLLECTOR_NAMES, MAX_INTERVAL_MS, MIN_INTERVAL_MS, merge_settings


def test_defaults_cover_every_collector_enabled_with_intervals_of_seconds() -> None:
    names = ["cpu", "memory", "network", "cgroups", "cpufreq", "agent", "workloads"]
    assert [s.name for s in DEFAULT_SETTINGS] == names
    assert all(s.enabled for s in DEFAULT_SETTINGS)
    # idle CPU budget: nothing samples more often than every 5 s by default
    assert all(5_000 <= s.interval_ms <= 60_000 for s in DEFAULT_SETTINGS)


def test_merge_changes_only_the_listed_collectors_and_keeps_the_canonical_order() -> None:
    merged = merge_settings(
        DEFAULT_SETTINGS, [CollectorSettings("agent", False, 1000), CollectorSettings("cpu", True, 500)]
    )
    assert [s.name for s in merged] == list(COLLECTOR_NAMES)
    assert merged[0] == CollectorSettings("cpu", True, 500)
    assert merged[5] == CollectorSettings("agent", False, 1000)
    assert merged[1:5] + merged[6:] == list(DEFAULT_SETTINGS[1:5] + DEFAULT_SETTINGS[6:])


@pytest.mark.parametrize(
    ("update", "field", "reason"),
    [
        (CollectorSettings("gpu", True, 1000), "collectors[1].name", "unknown collector 'gpu'"),
        (CollectorSettings("cpu", True, MIN_INTERVAL_MS - 1), "collectors[1].interval_ms", "out of range"),
        (CollectorSettings("cpu", True, MAX_INTERVAL_MS + 1), "collectors[1].interval_ms", "out of range"),
        (CollectorSettings("cpu", True, 0), "collectors[1].interval_ms", "out of range"),
        (CollectorSettings("cpu", True, 1.5), "collectors[1].interval_ms", "integer"),  # type: ignore[arg-type]
        (CollectorSettings("cpu", "yes", 1000), "collectors[1].enabled", "true or false"),  # type: ignore[arg-type]
        (CollectorSettings("memory", True, 1000), "collectors[1].name", "listed twice"),
    ],
)
def test_bad_updates_name_the_field_and_the_reason(
    update: CollectorSettings, field: str, reason: str
) -> None:
    with pytest.raises(InvalidSpec) as err:
        merge_settings(DEFAULT_SETTINGS, [CollectorSettings("memory", False, 1000), update])
    assert err.value.field == field
    assert reason in err.value.reason


def test_interval_bounds_are_inclusive() -> None:
    merged = merge_settings(
        DEFAULT_SETTINGS,
        [CollectorSettings("cpu", True, MIN_INTERVAL_MS), CollectorSettings("memory", True, MAX_INTERVAL_MS)],
    )
    assert (merged[0].interval_ms, merged[1].interval_ms) == (MIN_INTERVAL_MS, MAX_INTERVAL_MS)
