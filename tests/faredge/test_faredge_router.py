"""The router as a specification: what each inbound message does, and what gets dropped."""

from __future__ import annotations

import json
from typing import Any

import pytest

from faredge.errors import Invalid, NotFound
from faredge.protocol.inbound import Inbound
from faredge.testing import sample


def msg(
    kind: str, body: dict[str, Any] | bytes, identity: str | None = "d1", transport: str = "mqtt"
) -> Inbound:
    payload = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Inbound(transport, identity, kind, payload)


BIRTH = {"id": "d1", "fw": "1.2", "board": "esp32", "boot": 5, "sensors": ["temp", "hum"], "freq": 160000000}


def dropped(kit: Any, reason: str, device: str = "d1", transport: str = "mqtt") -> float:
    return sample(kit.metrics, "faredge_dropped_total", device=device, transport=transport, reason=reason)


def test_birth_registers_the_device_online_and_reports_inventory(kit: Any) -> None:
    kit.router.handle(msg("birth", BIRTH))
    d = kit.router.registry.get("d1")
    assert (d.online, d.board, d.fw, d.boot, d.sensors, d.transport) == (
        True,
        "esp32",
        "1.2",
        5,
        ("temp", "hum"),
        "mqtt",
    )
    assert sample(kit.metrics, "faredge_device_online", device="d1") == 1
    assert sample(kit.metrics, "faredge_device_boots", device="d1") == 5
    assert kit.inventory.changes == 1
    kit.router.handle(msg("birth", BIRTH))  # reconnect, nothing changed: no new inventory report
    assert kit.inventory.changes == 1


def test_telemetry_updates_live_state_and_metrics(kit: Any) -> None:
    kit.router.handle(msg("birth", BIRTH))
    kit.router.handle(
        msg(
            "telemetry",
            {"id": "d1", "seq": 1, "up": 60, "mem_free": 1000, "freq": 8, "r": {"temp": 21.5, "hum": None}},
        )
    )
    kit.router.handle(
        msg("telemetry", {"id": "d1", "seq": 2, "batch": [{"r": {"temp": 22.0}}, {"r": {"temp": 23.0}}]})
    )
    view = kit.router.view("d1")
    assert view["live"]["readings"] == {"temp": 23.0} and view["live"]["seq"] == 2  # the latest sample
    assert sample(kit.metrics, "faredge_device_reading", device="d1", sensor="temp") == 23.0
    assert sample(kit.metrics, "faredge_device_mem_free_bytes", device="d1") == 1000
    assert sample(kit.metrics, "faredge_messages_total", device="d1", transport="mqtt", kind="telemetry") == 2


def test_payload_id_must_match_the_authenticated_identity(kit: Any) -> None:
    kit.router.handle(msg("birth", BIRTH))
    kit.router.handle(msg("birth", {**BIRTH, "id": "d2"}))
    kit.router.handle(msg("telemetry", {"id": "d2", "seq": 1, "r": {}}, identity="d1"))
    assert "d2" not in kit.router.registry
    assert dropped(kit, "identity") == 2


def test_messages_from_unknown_devices_are_dropped_under_one_label(kit: Any) -> None:
    kit.router.handle(msg("telemetry", {"id": "ghost", "seq": 1, "r": {}}, identity="ghost"))
    assert dropped(kit, "unknown_device", device="unknown") == 1
    assert "ghost" not in kit.router.registry


def test_serial_link_must_identify_with_a_birth_first(kit: Any) -> None:
    kit.router.handle(msg("telemetry", {"id": "d1", "seq": 1, "r": {}}, identity=None, transport="serial"))
    assert dropped(kit, "unidentified", device="unknown", transport="serial") == 1
    kit.router.handle(msg("birth", BIRTH, identity=None, transport="serial"))
    assert kit.router.registry.get("d1").transport == "serial"


@pytest.mark.parametrize(("payload", "reason"), [(b"{oops", "json"), (b'{"id":"d1"}', "schema")])
def test_malformed_messages_are_counted_and_dropped(kit: Any, payload: bytes, reason: str) -> None:
    kit.router.handle(msg("birth", BIRTH))
    kit.router.handle(msg("telemetry", payload))
    assert dropped(kit, reason) == 1
    kit.router.handle(msg("telemetry", {"id": "d1", "seq": 9, "r": {"temp": 1}}))  # the next valid one counts
    assert kit.router.view("d1")["live"]["seq"] == 9


def test_twin_round_trip(kit: Any) -> None:
    kit.router.handle(msg("birth", BIRTH))
    kit.router.set_desired("d1", {"interval_ms": 500})
    assert kit.downlink.sent[-1] == ("d1", {"id": "d1", "version": 1, "settings": {"interval_ms": 500}})
    kit.router.handle(msg("twin/reported", {"id": "d1", "version": 1, "settings": {"interval_ms": 500}}))
    view = kit.router.view("d1")
    assert view["in_sync"] and view["twin"]["reported"] == {"interval_ms": 500}
    assert kit.router.registry.get("d1").twin.reported_version == 1


def test_twin_get_answers_with_the_full_desired_state(kit: Any) -> None:
    kit.router.handle(msg("birth", BIRTH))
    kit.router.set_desired("d1", {"interval_ms": 500})
    kit.router.set_desired("d1", {"batch": 4})
    kit.downlink.sent.clear()
    kit.router.handle(msg("twin/get", {"id": "d1"}))
    assert kit.downlink.sent == [
        ("d1", {"id": "d1", "version": 2, "settings": {"interval_ms": 500, "batch": 4}})
    ]


def test_stale_report_is_dropped_and_counted(kit: Any) -> None:
    kit.router.handle(msg("birth", BIRTH))
    kit.router.set_desired("d1", {"interval_ms": 500})
    kit.router.set_desired("d1", {"interval_ms": 700})
    kit.router.handle(msg("twin/reported", {"id": "d1", "version": 2, "settings": {"interval_ms": 700}}))
    kit.router.handle(msg("twin/reported", {"id": "d1", "version": 1, "settings": {"interval_ms": 500}}))
    assert kit.router.registry.get("d1").twin.reported == {"interval_ms": 700}
    assert dropped(kit, "stale_report") == 1
    assert sample(kit.metrics, "faredge_twin_reports_total", outcome="stale") == 1


def test_report_ahead_makes_the_bridge_resend_a_higher_version(kit: Any) -> None:
    kit.router.handle(msg("birth", BIRTH))
    kit.router.set_desired("d1", {"interval_ms": 500})
    kit.router.handle(msg("twin/reported", {"id": "d1", "version": 9, "settings": {"interval_ms": 100}}))
    assert kit.downlink.sent[-1][1]["version"] == 10
    assert kit.downlink.sent[-1][1]["settings"] == {"interval_ms": 500}


def test_set_validates_before_anything_changes(kit: Any) -> None:
    kit.router.handle(msg("birth", BIRTH))
    with pytest.raises(Invalid, match="interval_ms"):
        kit.router.set_desired("d1", {"interval_ms": 5, "batch": 2})
    with pytest.raises(NotFound):
        kit.router.set_desired("nobody", {"batch": 2})
    assert kit.router.registry.get("d1").twin.desired_version == 0 and kit.downlink.sent == []


def test_last_will_marks_the_device_offline(kit: Any) -> None:
    kit.router.handle(msg("birth", BIRTH))
    sub = kit.router.events.subscribe()
    kit.router.handle(msg("status", {"id": "d1", "online": False}))
    assert kit.router.registry.get("d1").online is False
    assert sample(kit.metrics, "faredge_device_online", device="d1") == 0
    assert sub.get(1) == {"event": "offline", "id": "d1", "reason": "status"}
    kit.router.handle(msg("telemetry", {"id": "d1", "seq": 3, "r": {}}))  # back: online again
    assert kit.router.registry.get("d1").online is True


def test_capacity_limits_new_devices(kit: Any) -> None:
    kit.router.registry._max = 1
    kit.router.handle(msg("birth", BIRTH))
    kit.router.handle(msg("birth", {**BIRTH, "id": "d2"}, identity="d2"))
    assert "d2" not in kit.router.registry
    assert dropped(kit, "capacity", device="unknown") == 1


def test_desired_state_too_big_for_a_serial_frame_is_refused(kit: Any) -> None:
    sensors = [f"sensor_{i:02d}_" + "x" * 20 for i in range(32)]  # all on the device: only size fails
    kit.router.handle(msg("birth", {**BIRTH, "sensors": sensors}, identity=None, transport="serial"))
    with pytest.raises(Invalid, match="over 1024"):
        kit.router.set_desired("d1", {"sensors": sensors})
    assert kit.router.registry.get("d1").twin.desired_version == 0 and kit.downlink.sent == []
