"""The router's parts, each alone: identity rule, presence rules, live table, twin decisions,
event shapes, downlink limits. test_faredge_router.py specifies them composed."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from faredge.bridge.downlink import DownlinkSender
from faredge.bridge.events import DeviceEvents, EventHub
from faredge.bridge.identity import check_identity
from faredge.bridge.presence import inventory_relevant, registered
from faredge.errors import Dropped, Invalid
from faredge.live import LiveTable, liveness_timeout
from faredge.protocol.messages import Birth, Sample, Telemetry, TwinGet, TwinReported
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Device
from faredge.twin import ReportOutcome, Twin
from faredge.twin.reconcile import decide_report, desired_message, plan_desired

BIRTH = Birth(id="d1", fw="1.2", board="esp32", boot=5, sensors=("temp",), freq=0)


# ------------------------------------------------------------------ identity
def test_a_message_may_only_speak_for_its_authenticated_device() -> None:
    check_identity(TwinGet("d1"), "d1", "twin/get")
    with pytest.raises(Dropped) as err:
        check_identity(TwinGet("d2"), "d1", "twin/get")
    assert err.value.reason == "identity"


def test_an_unidentified_link_may_only_send_a_birth() -> None:
    check_identity(BIRTH, None, "birth")
    with pytest.raises(Dropped) as err:
        check_identity(TwinGet("d1"), None, "twin/get")
    assert err.value.reason == "unidentified"


# ------------------------------------------------------------------ presence
def test_a_birth_sets_identity_and_online_and_keeps_the_twin() -> None:
    old = Device("d1", transport="mqtt", board="rp2040", twin=Twin(desired={"batch": 2}, desired_version=1))
    new = registered(old, BIRTH, "serial", "/dev/ttyACM0", now=42.0)
    assert (new.transport, new.board, new.fw, new.boot, new.port) == (
        "serial",
        "esp32",
        "1.2",
        5,
        "/dev/ttyACM0",
    )
    assert new.online and new.last_seen == 42.0 and new.twin == old.twin
    assert registered(None, BIRTH, "mqtt", "", now=1.0).twin == Twin()


def test_the_inventory_hears_of_new_devices_and_changed_identities_only() -> None:
    same = registered(None, BIRTH, "mqtt", "", now=1.0)
    assert inventory_relevant(None, same)
    assert not inventory_relevant(same, registered(same, BIRTH, "mqtt", "", now=2.0))
    offline = Device("d1", board="esp32", fw="1.2", sensors=("temp",), online=False)
    assert inventory_relevant(offline, same)
    assert inventory_relevant(
        same, registered(same, Birth("d1", "1.3", "esp32", 6, ("temp",), 0), "mqtt", "", 3.0)
    )


# ------------------------------------------------------------------ live state
def test_live_table_keeps_the_latest_sample_and_counts_messages() -> None:
    live = LiveTable()
    tel = Telemetry(
        "d1", 7, 1, (Sample(10, 900, 8, (("temp", 20.0),)), Sample(None, None, None, (("temp", 21.0),)))
    )
    got = live.record(tel, "mqtt", now=5.0)
    assert (got.seq, got.up, got.mem_free, got.freq, got.readings) == (7, 10, 900, 8, (("temp", 21.0),))
    live.count("d1", "mqtt", "twin/get")
    assert live.copy_of("d1").counts == {("mqtt", "telemetry"): 1, ("mqtt", "twin/get"): 1}
    copy = live.copy_of("d1")
    copy.counts.clear()
    assert live.copy_of("d1").counts  # a copy shares nothing mutable
    assert live.find("nobody") is None and live.copy_of("nobody").seq == -1


@pytest.mark.parametrize(
    ("twin", "expected"),
    [
        (Twin(), 10.0),  # no interval known: the minimum
        (Twin(desired={"interval_ms": 5000}), 15.0),
        (Twin(desired={"interval_ms": 5000}, reported={"interval_ms": 1000}), 10.0),  # reported wins
        (Twin(reported={"interval_ms": "soon"}), 10.0),
    ],
)
def test_liveness_timeout_is_three_intervals_at_least_the_minimum(twin: Twin, expected: float) -> None:
    assert liveness_timeout(Device("d1", twin=twin), minimum_s=10.0) == expected
    assert liveness_timeout(None, minimum_s=10.0) == 10.0


# ------------------------------------------------------------------ twin decisions
def test_plan_desired_bumps_the_version_only_on_change_and_checks_the_size() -> None:
    twin = plan_desired("d1", Twin(), {"interval_ms": 500}, limit=1024)
    assert (twin.desired, twin.desired_version) == ({"interval_ms": 500}, 1)
    assert plan_desired("d1", twin, {"interval_ms": 500}, limit=1024) is twin
    with pytest.raises(Invalid, match="over 20"):
        plan_desired("d1", twin, {"batch": 2}, limit=20)
    assert desired_message("d1", twin) == b'{"id":"d1","settings":{"interval_ms":500},"version":1}'


def test_report_decisions() -> None:
    twin = Twin(desired={"batch": 2}, desired_version=2, reported_version=1)
    applied = decide_report(twin, TwinReported("d1", 2, {"batch": 2}, {}))
    assert applied.outcome is ReportOutcome.APPLIED and not applied.stale and not applied.resend
    assert applied.twin.in_sync
    stale = decide_report(twin, TwinReported("d1", 0, {}, {}))
    assert stale.stale and stale.twin is twin
    ahead = decide_report(twin, TwinReported("d1", 9, {}, {}))
    assert ahead.resend and ahead.twin.desired_version == 10


# ------------------------------------------------------------------ events and downlinks
class _Counter:
    def __init__(self) -> None:
        self.changes = 0

    def changed(self) -> None:
        self.changes += 1


def test_event_shapes_and_inventory_notifications() -> None:
    hub, inventory = EventHub(), _Counter()
    events = DeviceEvents(hub, inventory)
    events.telemetry("d1", 1, (("temp", 1.0),))  # nobody listens: not even built
    sub = hub.subscribe()
    events.birth(BIRTH, "mqtt")
    events.telemetry("d1", 2, (("temp", 1.5),))
    events.online("d1", False, "status")
    got: list[dict[str, Any] | None] = [sub.get(0.1) for _ in range(3)]
    assert got == [
        {"event": "birth", "id": "d1", "transport": "mqtt", "fw": "1.2", "boot": 5, "sensors": ["temp"]},
        {"event": "telemetry", "id": "d1", "seq": 2, "readings": {"temp": 1.5}},
        {"event": "offline", "id": "d1", "reason": "status"},
    ]
    assert sub.get(0.01) is None and inventory.changes == 1


def test_downlink_limits_and_a_missing_downlink_keeps_the_state() -> None:
    sender = DownlinkSender(RateLimitedLog(logging.getLogger("t"), 60), None, max_bytes=4096)
    assert (sender.limit("serial"), sender.limit("mqtt")) == (1024, 4096)
    sender.send_desired(Device("d1", transport="serial"))  # no downlink: logged, nothing raised
