"""Bridge ↔ real Mosquitto with per-device credentials and ACLs."""

from __future__ import annotations

import json
import select
import socket
import uuid
from typing import Any

import pytest

from faredge.bootstrap import Bridge
from faredge.channels import mqtt as mqtt_channel
from faredge.channels.mqtt import ReadBuffer
from faredge.testing import DeviceClient, sample
from mlsysops.testing import wait_for


def processed(bridge: Bridge, device_id: str, kind: str = "telemetry") -> float:
    return sample(bridge.metrics, "faredge_messages_total", device=device_id, transport="mqtt", kind=kind)


def test_birth_and_telemetry_reach_state_and_metrics(mqtt_bridge: Any, device: Any) -> None:
    bridge = mqtt_bridge()
    dev = device()
    dev.birth()
    dev.publish("telemetry", {"seq": 1, "up": 5, "mem_free": 100, "freq": 8, "r": {"temp": 20.5}}, qos=0)
    wait_for(lambda: processed(bridge, dev.id) == 1, what="telemetry processed")
    assert bridge.router.view(dev.id)["live"]["readings"] == {"temp": 20.5}
    assert bridge.registry.get(dev.id).online


def test_acl_denies_publishing_under_another_device(mqtt_bridge: Any, device: Any) -> None:
    bridge = mqtt_bridge()
    victim, attacker = device(), device()
    victim.birth()
    attacker.publish("telemetry", {"id": victim.id, "seq": 666, "r": {"temp": -99}}, device_topic=victim.id)
    victim.publish("telemetry", {"seq": 1, "r": {"temp": 20}})  # a sentinel after the attempt
    wait_for(lambda: processed(bridge, victim.id) == 1, what="sentinel processed")
    assert bridge.router.view(victim.id)["live"]["seq"] == 1  # the forged one never arrived


def test_payload_id_not_matching_the_topic_is_dropped_and_counted(mqtt_bridge: Any, device: Any) -> None:
    bridge = mqtt_bridge()
    a, b = device(), device()
    a.birth()
    b.birth()
    a.publish("telemetry", {"id": b.id, "seq": 7, "r": {"temp": 1}})
    wait_for(
        lambda: (
            sample(bridge.metrics, "faredge_dropped_total", device=a.id, transport="mqtt", reason="identity")
            == 1
        ),
        what="identity drop counted",
    )
    assert bridge.router.view(b.id)["live"]["seq"] == -1


def test_bad_payloads_are_dropped_and_valid_ones_still_processed(mqtt_bridge: Any, device: Any) -> None:
    bridge = mqtt_bridge()
    dev = device()
    dev.birth()
    dev.publish("telemetry", b"\xff{garbage")
    dev.publish("telemetry", json.dumps({"id": dev.id, "seq": 1, "r": {"x": "y" * 5000}}).encode())
    dev.publish("telemetry", {"seq": 2, "r": {"temp": 3}})
    wait_for(lambda: processed(bridge, dev.id) == 1, what="valid telemetry")
    for reason in ("json", "oversize"):
        assert (
            sample(bridge.metrics, "faredge_dropped_total", device=dev.id, transport="mqtt", reason=reason)
            == 1
        )


def test_twin_round_trip_over_mqtt(mqtt_bridge: Any, device: Any) -> None:
    bridge = mqtt_bridge()
    dev = device()
    dev.birth()
    wait_for(lambda: dev.id in bridge.registry, what="birth")
    bridge.router.set_desired(dev.id, {"interval_ms": 2000, "sensors": ["temp"]})
    desired = wait_for(lambda: [d for d in dev.desired if d["version"] == 1], what="desired delivered")[0]
    assert desired["settings"] == {"interval_ms": 2000, "sensors": ["temp"]}
    dev.publish("twin/reported", {"version": 1, "settings": desired["settings"], "errors": {}})
    wait_for(lambda: bridge.router.view(dev.id)["in_sync"], what="twin in sync")


def test_desired_state_is_retained_for_a_device_that_connects_later(
    mqtt_bridge: Any, device: Any, broker: Any
) -> None:
    bridge = mqtt_bridge()
    dev = device()
    dev.birth()
    wait_for(lambda: dev.id in bridge.registry, what="birth")
    bridge.router.set_desired(dev.id, {"batch": 3})
    wait_for(lambda: dev.desired, what="desired delivered")
    dev.close()
    again = DeviceClient(broker.port, dev.id, broker.passwords[dev.id]).start()
    try:
        assert wait_for(lambda: again.desired, what="retained desired")[0]["settings"] == {"batch": 3}
    finally:
        again.close()


def test_last_will_marks_the_device_offline(mqtt_bridge: Any, device: Any) -> None:
    bridge = mqtt_bridge()
    dev = device()
    dev.birth()
    wait_for(lambda: dev.id in bridge.registry and bridge.registry.get(dev.id).online, what="online")
    dev.crash()
    wait_for(lambda: not bridge.registry.get(dev.id).online, what="offline via last will")


def test_qos1_messages_survive_bridge_downtime_and_a_broker_restart(
    mqtt_bridge: Any, device: Any, broker: Any
) -> None:
    client_id = f"bridge-{uuid.uuid4().hex[:8]}"
    first = mqtt_bridge(client_id)
    dev = device()
    dev.birth()
    wait_for(lambda: dev.id in first.registry, what="birth")
    first.stop()  # the persistent session stays at the broker
    for seq in range(1, 51):
        dev.publish("telemetry", {"seq": seq, "r": {"temp": seq}}, qos=1)
    broker.process.restart()  # queued messages must survive (persistence)
    second = mqtt_bridge(client_id)
    wait_for(lambda: processed(second, dev.id) == 50, what="all 50 queued messages", timeout=20)
    assert second.router.view(dev.id)["live"]["seq"] == 50  # in order
    assert second.mqtt is not None and second.mqtt.connects == 1


def test_running_bridge_reconnects_after_a_broker_restart(mqtt_bridge: Any, device: Any, broker: Any) -> None:
    bridge = mqtt_bridge()
    dev = device()
    dev.birth()
    wait_for(lambda: dev.id in bridge.registry, what="birth")
    broker.process.restart()
    wait_for(lambda: bridge.mqtt.connects == 2 and bridge.mqtt.connected.is_set(), what="bridge reconnected")
    wait_for(dev.client.is_connected, what="device reconnected")
    dev.publish("telemetry", {"seq": 77, "r": {"temp": 1}}, qos=1)
    wait_for(lambda: bridge.router.view(dev.id)["live"]["seq"] == 77, what="telemetry after the restart")


def test_read_buffer_serves_small_reads_from_one_chunk_like_a_socket() -> None:
    left, right = socket.socketpair()
    with left, right:
        left.setblocking(False)
        reader = ReadBuffer(left)
        with pytest.raises(BlockingIOError):  # nothing received: the socket's own error
            reader.recv(1)
        stream = bytes(range(256)) * 4
        right.sendall(stream)
        wait_for(lambda: select.select([left], [], [], 0)[0], what="data")
        got = [reader.recv(1), reader.recv(1), reader.recv(100)]  # paho's pattern
        assert [len(g) for g in got] == [1, 1, 100]
        assert reader.pending() == len(stream) - 102  # the rest came with the first recv
        while reader.pending():
            got.append(reader.recv(300))
            assert len(got[-1]) <= 300
        assert b"".join(got) == stream
        right.close()
        wait_for(lambda: select.select([left], [], [], 0)[0], what="end of stream")
        assert reader.recv(10) == b""


def test_every_message_arrives_in_order_when_packets_straddle_read_chunks(
    mqtt_bridge: Any, device: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mqtt_channel, "READ_CHUNK", 37)  # each packet split across chunks
    bridge = mqtt_bridge()
    assert bridge.mqtt is not None and bridge.mqtt.reads_buffered
    dev = device()
    dev.birth()
    for seq in range(1, 301):
        dev.publish("telemetry", {"seq": seq, "r": {"temp": seq, "hum": 50}}, qos=seq % 2)
    wait_for(lambda: processed(bridge, dev.id) == 300, what="all 300 messages", timeout=20)
    assert bridge.router.view(dev.id)["live"]["seq"] == 300  # in order
    assert bridge.mqtt.connects == 1
