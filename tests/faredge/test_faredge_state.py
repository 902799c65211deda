"""Twin rules, registry persistence, bounded metric labels and the rate-limited log."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from faredge.errors import Invalid, NotFound
from faredge.metrics import OTHER, UNKNOWN, DeviceLabels
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Device, Registry
from faredge.twin import ReportOutcome, Twin, apply_report, set_desired


# ------------------------------------------------------------------ twin
def test_set_desired_bumps_the_version_only_on_change() -> None:
    t1 = set_desired(Twin(), {"interval_ms": 500})
    assert (t1.desired, t1.desired_version) == ({"interval_ms": 500}, 1)
    assert set_desired(t1, {"interval_ms": 500}) is t1
    t2 = set_desired(t1, {"batch": 2})
    assert (t2.desired, t2.desired_version) == ({"interval_ms": 500, "batch": 2}, 2)


def test_report_of_the_desired_version_syncs_the_twin() -> None:
    twin = set_desired(Twin(), {"interval_ms": 500})
    twin, outcome = apply_report(twin, 1, {"interval_ms": 500}, {})
    assert outcome is ReportOutcome.APPLIED and twin.in_sync


def test_stale_report_is_ignored() -> None:
    twin = set_desired(set_desired(Twin(), {"interval_ms": 500}), {"interval_ms": 600})
    twin, _ = apply_report(twin, 2, {"interval_ms": 600}, {})
    after, outcome = apply_report(twin, 1, {"interval_ms": 500}, {})
    assert outcome is ReportOutcome.STALE and after is twin


def test_report_ahead_of_desired_is_ignored_and_desired_jumps_past_it() -> None:
    twin = set_desired(Twin(), {"interval_ms": 500})
    after, outcome = apply_report(twin, 7, {"interval_ms": 100}, {})
    assert outcome is ReportOutcome.AHEAD
    assert after.reported == {} and after.desired_version == 8 and after.desired == {"interval_ms": 500}


def test_report_with_errors_is_recorded_but_not_in_sync() -> None:
    twin = set_desired(Twin(), {"freq_hz": 1_000_000})
    twin, outcome = apply_report(twin, 1, {}, {"freq_hz": "not supported by board"})
    assert outcome is ReportOutcome.APPLIED and not twin.in_sync and twin.errors


# ------------------------------------------------------------------ registry
def test_registry_survives_a_restart_with_everything_offline(tmp_path: Path) -> None:
    path = tmp_path / "state" / "registry.json"
    reg = Registry(path)
    reg.put(
        Device(
            "d1",
            transport="mqtt",
            board="esp32",
            fw="1.0",
            boot=4,
            sensors=("t",),
            online=True,
            twin=set_desired(Twin(), {"interval_ms": 900}),
        )
    )
    again = Registry(path)
    d = again.get("d1")
    assert (d.board, d.boot, d.sensors, d.twin.desired, d.twin.desired_version) == (
        "esp32",
        4,
        ("t",),
        {"interval_ms": 900},
        1,
    )
    assert d.online is False  # online only once it says so again
    assert not list(path.parent.glob(".*tmp"))  # atomic write left no temporary behind


def test_registry_refuses_a_corrupt_file_instead_of_starting_empty(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text("{half")
    with pytest.raises(Invalid, match="unreadable registry"):
        Registry(path)
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(Invalid, match="format"):
        Registry(path)


def test_registry_capacity_and_unknown_ids(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "r.json", max_devices=1)
    reg.put(Device("a"))
    with pytest.raises(Invalid, match="full"):
        reg.put(Device("b"))
    with pytest.raises(NotFound):
        reg.get("b")
    assert [d.id for d in Registry(tmp_path / "r.json")] == ["a"]


def test_registry_changes_are_journal_appends_folded_into_the_snapshot(tmp_path: Path) -> None:
    """Issue 9, defect 7: a change costs one appended line, not a rewrite of every device."""
    path = tmp_path / "r.json"
    reg = Registry(path)
    for i in range(3000):
        reg.put(Device(f"d{i}", boot=1))
    for boot in range(2, 5001):  # a flapping device: 5,000 more changes
        reg.put(Device("d7", boot=boot))
    reg.put(Device("d7", boot=9))
    reg.flush()
    journal = path.with_name("r.json.journal")
    lines = journal.read_text().splitlines()
    assert 0 < len(lines) <= 6000  # folded into the snapshot once it passed max(1024, 2 x devices)
    assert json.loads(lines[-1])["id"] == "d7"
    again = Registry(path)
    assert len(again) == 3000 and again.get("d7").boot == 9 and again.get("d2999").boot == 1
    reg.close()


def test_a_torn_last_journal_line_is_ignored_a_torn_middle_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    reg = Registry(path)
    reg.put(Device("a", boot=1))
    reg.put(Device("a", boot=2))
    reg.close()
    journal = path.with_name("r.json.journal")
    whole = journal.read_text()
    journal.write_text(whole + '{"id": "b", "bo')  # a crash mid-append: never acknowledged
    assert [(d.id, d.boot) for d in Registry(path)] == [("a", 2)]
    journal.write_text('{"id": "b", "bo\n' + whole)
    with pytest.raises(Invalid, match="line 1 unreadable"):
        Registry(path)


def test_ten_thousand_births_cost_constant_work_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Work counted, not timed: the old registry rewrote and fsynced the whole file on every
    # birth (10,000 births: 50 million device records written, 10,000 fsyncs).
    snapshot_records: list[int] = []
    compact = Registry._compact

    def counting_compact(self: Registry) -> None:
        snapshot_records.append(len(self))
        compact(self)

    syncs = [0]
    fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        syncs[0] += 1
        fsync(fd)

    monkeypatch.setattr(Registry, "_compact", counting_compact)
    monkeypatch.setattr(os, "fsync", counting_fsync)
    reg = Registry(tmp_path / "r.json")
    batches = 0
    for i in range(10_000):
        reg.put(Device(f"d{i}", transport="mqtt", sensors=("t",), online=True))
        if i % 256 == 255:
            reg.flush()  # one group commit per worker batch
            batches += 1
    reg.flush()
    journal_lines = len((tmp_path / "r.json.journal").read_text().splitlines())
    assert journal_lines + sum(snapshot_records) <= 3 * 10_000  # amortised O(1) records per birth
    assert syncs[0] <= batches + 1 + 3 * len(snapshot_records)  # a snapshot: file and directory twice
    assert len(Registry(tmp_path / "r.json")) == 10_000


# ------------------------------------------------------------------ metric labels
def test_device_labels_are_bounded() -> None:
    labels = DeviceLabels(max_devices=2)
    assert [labels.label(i, True) for i in ("a", "b", "c", "a")] == ["a", "b", OTHER, "a"]
    assert labels.label("zzz", False) == UNKNOWN
    assert labels.label(None, True) == UNKNOWN


# ------------------------------------------------------------------ rate-limited log
def test_rate_limited_log_says_it_once_per_key_per_interval(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    log = RateLimitedLog(logging.getLogger("test.faredge.rl"), interval_s=60, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="test.faredge.rl"):
        assert log.warning("d1/json", "bad %s", "one")
        assert not log.warning("d1/json", "bad %s", "two")
        assert not log.warning("d1/json", "bad %s", "three")
        assert log.warning("d2/json", "bad %s", "other device")
        now[0] += 61
        assert log.warning("d1/json", "bad %s", "four")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["bad one", "bad other device", "bad four (2 similar suppressed)"]


def test_metrics_past_the_label_cap_are_summed_under_other(tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from faredge.bridge.router import Router
    from faredge.metrics import BridgeMetrics
    from faredge.protocol.inbound import Inbound

    metrics = BridgeMetrics(CollectorRegistry(), max_devices=2)
    router = Router(Registry(None), metrics, RateLimitedLog(logging.getLogger("t")))
    metrics.watch_devices(router.snapshot)
    for i in range(5):
        dev = f"d{i}"
        router.handle(Inbound("mqtt", dev, "birth", json.dumps({"id": dev, "boot": 1}).encode()))
        router.handle(
            Inbound("mqtt", dev, "telemetry", json.dumps({"id": dev, "seq": 1, "r": {"t": i}}).encode())
        )
    text = generate_latest(metrics.registry).decode()
    reading_labels = {
        line.split("{")[1].split(",")[0]
        for line in text.splitlines()
        if line.startswith("faredge_device_reading{")
    }
    assert reading_labels == {'device="d0"', 'device="d1"'}  # no gauges for the capped ones
    get = metrics.registry.get_sample_value
    assert get("faredge_messages_total", {"device": "other", "transport": "mqtt", "kind": "telemetry"}) == 3
    assert get("faredge_device_online", {"device": "other"}) == 3
    assert get("faredge_messages_total", {"device": "d0", "transport": "mqtt", "kind": "birth"}) == 1
