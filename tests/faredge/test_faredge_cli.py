"""`mlsysops devices ...` end to end: CLI → control socket → running bridge → broker → device."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from faredge.broker import BrokerLayout, parse_acl
from faredge.testing import DeviceClient
from mlsysops.cli import main
from mlsysops.testing import wait_for


def run(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


@pytest.fixture
def live(broker: Any, mqtt_bridge: Any) -> Any:
    bridge = mqtt_bridge()
    dev_id, password = broker.device()
    dev = DeviceClient(broker.port, dev_id, password).start()
    dev.birth()
    dev.publish("telemetry", {"seq": 1, "up": 3, "mem_free": 5000, "freq": 8, "r": {"temp": 19.25}})
    wait_for(
        lambda: dev_id in bridge.registry and bridge.router.view(dev_id)["live"]["seq"] == 1, what="telemetry"
    )
    yield bridge, dev, ["devices", "--socket", str(bridge.config.control_socket)]
    dev.close()


def test_list_as_table_and_json(live: Any) -> None:
    _bridge, dev, cli = live
    table = run(*cli, "list")
    assert table.exit_code == 0
    header, *rows = table.output.splitlines()
    assert header.split()[:5] == ["ID", "TRANSPORT", "BOARD", "FW", "ONLINE"]
    assert any(r.split()[0] == dev.id and "yes" in r.split() for r in rows)
    data = json.loads(run(*cli, "list", "-o", "json").output)
    assert [d["id"] for d in data] == [dev.id] and data[0]["live"]["readings"] == {"temp": 19.25}


def test_show_as_yaml(live: Any) -> None:
    _bridge, dev, cli = live
    data = yaml.safe_load(run(*cli, "show", dev.id, "-o", "yaml").output)
    assert data["id"] == dev.id and data["sensors"] == ["temp"] and data["live"]["mem_free"] == 5000
    assert "reading temp" in run(*cli, "show", dev.id).output


def test_set_reaches_the_device_and_the_reported_version_catches_up(live: Any) -> None:
    _bridge, dev, cli = live
    result = run(*cli, "set", dev.id, "interval_ms=1500", "sensors=temp", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["desired_version"] == 1
    desired = wait_for(lambda: dev.desired, what="desired on the device")[-1]
    assert desired == {"id": dev.id, "version": 1, "settings": {"interval_ms": 1500, "sensors": ["temp"]}}
    dev.publish("twin/reported", {"version": 1, "settings": desired["settings"]})
    wait_for(lambda: json.loads(run(*cli, "show", dev.id, "-o", "json").output)["in_sync"], what="in sync")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["interval_ms=10"], "invalid settings.interval_ms: 10 is outside 100..3600000"),
        (["volume=11"], "invalid settings.volume: unknown setting"),
        (["interval_ms"], "invalid interval_ms: expected key=value"),
    ],
)
def test_set_rejects_bad_values_before_sending(live: Any, args: list[str], message: str) -> None:
    bridge, dev, cli = live
    result = run(*cli, "set", dev.id, *args)
    assert result.exit_code == 1 and message in result.output
    assert bridge.registry.get(dev.id).twin.desired_version == 0


def test_unknown_device_and_absent_bridge_are_clear_errors(live: Any, tmp_path: Path) -> None:
    _bridge, _dev, cli = live
    result = run(*cli, "show", "nobody")
    assert result.exit_code == 1 and "unknown device 'nobody'" in result.output
    result = run("devices", "--socket", str(tmp_path / "none.sock"), "list")
    assert result.exit_code == 1 and "bridge is not running" in result.output


def test_monitor_follows_events(live: Any) -> None:
    bridge, dev, cli = live
    import threading

    out: list[Any] = []
    t = threading.Thread(target=lambda: out.append(run(*cli, "monitor", "--count", "1", "-o", "json")))
    t.start()
    wait_for(lambda: bridge.router.events.subscribers, what="monitor subscribed")
    dev.publish("telemetry", {"seq": 2, "r": {"temp": 20.0}})
    t.join(10)
    event = json.loads(out[0].output.splitlines()[0])
    assert (event["event"], event["id"], event["seq"]) == ("telemetry", dev.id, 2)


def test_provision_writes_password_acl_and_device_config(tmp_path: Path) -> None:
    broker_dir = tmp_path / "broker"
    result = run(
        "devices",
        "provision",
        "greenhouse-1",
        "--broker-dir",
        str(broker_dir),
        "--port",
        "1884",
        "--board",
        "rp2040",
        "-o",
        "json",
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    config = data["config"]
    assert config["id"] == "greenhouse-1" and config["board"] == "rp2040" and config["mqtt"]["port"] == 1884
    layout = BrokerLayout(broker_dir)
    assert layout.passwd.read_text().startswith("faredge:") or "greenhouse-1:" in layout.passwd.read_text()
    assert config["mqtt"]["password"] not in layout.passwd.read_text()  # hashed
    acl = parse_acl(layout.acl.read_text())
    assert "topic write mlsysops/v1/dev/greenhouse-1/telemetry" in acl["greenhouse-1"]
    assert all("greenhouse-1" in rule for rule in acl["greenhouse-1"])
    assert stat.S_IMODE(os.stat(data["config_file"]).st_mode) == 0o600
    again = json.loads(
        run("devices", "provision", "greenhouse-1", "--broker-dir", str(broker_dir), "-o", "json").output
    )
    assert again["config"]["mqtt"]["password"] != config["mqtt"]["password"]
    assert list(parse_acl(layout.acl.read_text())) == ["faredge", "greenhouse-1"]


def test_provision_rejects_a_bad_device_id(tmp_path: Path) -> None:
    result = run("devices", "provision", "a/b", "--broker-dir", str(tmp_path))
    assert result.exit_code == 1 and "invalid device" in result.output
    assert not (tmp_path / "passwd").exists()


# ------------------------------------------------------------------ issue 9, defect 8
@pytest.fixture
def capable(broker: Any, mqtt_bridge: Any) -> Any:
    """A device whose birth lists its frequencies (as our firmware's does)."""
    bridge = mqtt_bridge()
    dev_id, password = broker.device()
    dev = DeviceClient(broker.port, dev_id, password).start()
    dev.birth(sensors=["temp", "light"], caps={"freq_hz": [80000000, 160000000, 240000000]})
    wait_for(lambda: dev_id in bridge.registry, what="birth")
    yield bridge, dev, ["devices", "--socket", str(bridge.config.control_socket)]
    dev.close()


def test_values_the_device_cannot_take_are_refused_up_front(capable: Any) -> None:
    bridge, dev, cli = capable
    result = run(*cli, "set", dev.id, "freq_hz=100000000")
    assert result.exit_code == 1
    assert "100000000 is not a frequency" in result.output
    assert "80000000, 160000000, 240000000" in result.output
    result = run(*cli, "set", dev.id, "sensors=temp,humidity")
    assert result.exit_code == 1 and "humidity not on" in result.output
    assert bridge.registry.get(dev.id).twin.desired_version == 0 and not dev.desired  # nothing sent
    assert run(*cli, "set", dev.id, "freq_hz=160000000", "sensors=light").exit_code == 0
    assert wait_for(lambda: dev.desired, what="desired")[-1]["settings"]["freq_hz"] == 160000000


def test_unset_removes_one_key_and_sends_the_rest(capable: Any) -> None:
    bridge, dev, cli = capable
    assert run(*cli, "set", dev.id, "interval_ms=700", "batch=4").exit_code == 0
    result = run(*cli, "unset", dev.id, "batch", "-o", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) | {"reported_version": None} == {
        "id": dev.id,
        "desired_version": 2,
        "desired": {"interval_ms": 700},
        "reported_version": None,
    }
    wait_for(lambda: dev.desired and dev.desired[-1]["version"] == 2, what="the rest sent")
    assert dev.desired[-1]["settings"] == {"interval_ms": 700}
    assert run(*cli, "unset", dev.id, "batch").exit_code == 0  # again: nothing changes
    assert bridge.registry.get(dev.id).twin.desired_version == 2
    result = run(*cli, "unset", dev.id, "volume")
    assert result.exit_code == 1 and "invalid keys.volume: unknown setting" in result.output


def _firmware_check_id() -> Any:
    from faredge.virtual.firmware import load_module  # the firmware's own rules, plain Python

    return load_module("config").check_id


@pytest.mark.parametrize("device_id", ["a" * 32, "a" * 33, "a" * 64, ".hidden", "a.b-c_d", "", "a/b", "é"])
def test_one_id_rule_for_bridge_provisioning_and_firmware(device_id: str, tmp_path: Path) -> None:
    from faredge.errors import Dropped, Invalid
    from faredge.protocol.messages import check_device_id, parse_message

    def bridge_ok() -> bool:
        try:
            check_device_id(device_id)
            parse_message("birth", json.dumps({"id": device_id, "boot": 1}).encode())
            return True
        except (Invalid, Dropped):
            return False

    provisioned = run("devices", "provision", device_id, "--broker-dir", str(tmp_path)).exit_code == 0
    firmware_ok = _firmware_check_id()(device_id) is None
    assert bridge_ok() == provisioned == firmware_ok == (device_id in ("a" * 32, "a.b-c_d"))
