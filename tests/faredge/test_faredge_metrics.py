"""The bridge's /metrics over HTTP: promtool-clean, with the link and twin gauges alerting needs
(issue 9, defect 6). A real Mosquitto, a paho device and a serial device on an in-memory port."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from typing import Any

import pytest

from faredge.channels.memory import memory_pair
from faredge.channels.mosquitto import free_port
from faredge.config import PortSpec, SerialSettings
from faredge.protocol.frames import Frame, FrameType, encode_frame
from mlsysops.testing import wait_for


def scrape(listen: str) -> str:
    with urllib.request.urlopen(f"http://{listen}/metrics", timeout=5) as response:
        return str(response.read().decode())


def value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return None


def test_metrics_are_promtool_clean_and_show_links_twins_and_denials(
    make_bridge: Any, new_config: Any, broker: Any, device: Any
) -> None:
    bridge_end, device_end = memory_pair("mem0")
    listen = f"127.0.0.1:{free_port()}"
    config = new_config(
        metrics_listen=listen,
        mqtt=broker.bridge_settings(),
        serial=SerialSettings(ports=(PortSpec(path="mem0"), PortSpec(path="mem1")), scan_interval_s=0.02),
    )
    bridge = make_bridge(
        config,
        resolve_port=lambda spec: spec.path if spec.path == "mem0" else None,
        open_port=lambda path, spec: bridge_end,
    )
    wait_for(bridge.mqtt.connected.is_set, what="bridge connected")
    birth = {"id": "ser1", "fw": "1", "board": "virtual", "boot": 2, "sensors": ["t"]}
    reported = {"id": "ser1", "version": 0, "settings": {}, "errors": {}}
    device_end.write(encode_frame(Frame(FrameType.BIRTH, 0, json.dumps(birth).encode())))
    device_end.write(encode_frame(Frame(FrameType.TWIN_REPORTED, 1, json.dumps(reported).encode())))
    dev = device()
    dev.birth()
    dev.publish("telemetry", {"id": "forged", "seq": 1, "r": {}})  # identity denial
    wait_for(lambda: "ser1" in bridge.registry and dev.id in bridge.registry, what="births")
    bridge.router.set_desired(dev.id, {"interval_ms": 500})  # not reported: out of sync
    denial = 'faredge_identity_denials_total{reason="identity",transport="mqtt"}'
    wait_for(lambda: value(scrape(listen), denial), what="identity denial exported")
    text = scrape(listen)
    if shutil.which("promtool") is None:
        pytest.skip("promtool (Debian package prometheus) not installed")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
    assert value(text, "faredge_broker_connected") == 1
    assert value(text, 'faredge_serial_port_state{port="mem0",state="identified"}') == 1
    assert value(text, 'faredge_serial_port_state{port="mem1",state="absent"}') == 1
    assert value(text, f'faredge_device_twin_in_sync{{device="{dev.id}"}}') == 0
    assert value(text, 'faredge_device_twin_in_sync{device="ser1"}') == 1
    assert value(text, 'faredge_device_boots{device="ser1"}') == 2
    assert "_boot_count" not in text


def test_every_ota_outcome_is_exported_at_zero_before_the_first_update() -> None:
    # A counter child created at its first increment starts at 1, which increase() cannot see:
    # the OTA alert would miss the first failed update.
    from prometheus_client import CollectorRegistry, generate_latest

    from faredge.metrics import BridgeMetrics

    registry = CollectorRegistry()
    BridgeMetrics(registry)
    text = generate_latest(registry).decode()
    for outcome in ("confirmed", "failed", "rolled_back"):
        assert f'faredge_ota_updates_total{{outcome="{outcome}"}} 0.0' in text
