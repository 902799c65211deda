"""The daemon's YAML config: the documented example parses, every error names its key."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from faredge.config import EXAMPLE, load_config, parse_config
from faredge.daemon import main
from faredge.errors import Invalid

DOC = Path(__file__).parents[2] / "docs" / "faredge-bridge.md"


def example() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE)
    data["mqtt"]["password_file"] = "bridge.password"
    for key in ("ca_file", "cert_file", "key_file"):
        data["mqtt"]["tls"][key] = key
    return data


def test_the_documented_example_parses(tmp_path: Path) -> None:
    (tmp_path / "bridge.password").write_text("s3cret\n")
    config = parse_config(example(), tmp_path)
    assert config.mqtt is not None and config.mqtt.password == "s3cret"
    assert config.mqtt.tls is not None and config.mqtt.tls.ca_file == str(tmp_path / "ca_file")
    assert config.serial is not None and [p.name for p in config.serial.ports] == [
        "/dev/ttyACM0",
        "usb:2e8a:0005:E660583883265A2D",
    ]
    assert config.serial.ports[1].id == "greenhouse-3"


def test_the_example_is_the_one_in_the_docs() -> None:
    if not DOC.exists():
        pytest.skip("docs/faredge-bridge.md not written yet")
    assert EXAMPLE.strip() in DOC.read_text()


@pytest.mark.parametrize(
    ("patch", "field", "reason"),
    [
        ({"mqtt": {"port": 70000}}, "mqtt.port", "outside 1..65535"),
        ({"mqtt": {"prot": 1883}}, "mqtt.prot", "unknown key"),
        ({"queue_size": "big"}, "queue_size", "must be int"),
        ({"metrics": {"listen": "9465"}}, "metrics.listen", "not host:port"),
        ({"serial": {"ports": [{"baudrate": 9600}]}}, "serial.ports[0]", "exactly one of path or usb"),
        ({"serial": {"ports": [{"path": "/dev/x", "id": "a b"}]}}, "serial.ports[0].id", "not a device id"),
        ({"serial": {"ports": [{"path": "/dev/x"}, {"path": "/dev/x"}]}}, "serial.ports", "twice"),
        ({"serial": {"ports": [{"usb": {}}]}}, "serial.ports[0].usb", "at least one of vid"),
        ({"serial": {"ports": [{"usb": {"vid": 70000}}]}}, "serial.ports[0].usb.vid", "outside 0..65535"),
        ({"mqtt": {"tls": {"ca_file": "ca", "cert_file": "c"}}}, "mqtt.tls.key_file", "go together"),
        ({"mqtt": {"password_file": "/nonexistent/pw"}}, "mqtt.password_file", "cannot read"),
    ],
)
def test_bad_config_names_the_key(patch: dict[str, Any], field: str, reason: str) -> None:
    with pytest.raises(Invalid) as info:
        parse_config(patch)
    assert info.value.field == field and re.search(reason, info.value.reason)


def test_daemon_refuses_a_bad_config_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "faredge.yaml"
    path.write_text("mqtt: {port: 0}\n")
    assert main(["--config", str(path)]) == 2
    assert "mqtt.port: 0 is outside 1..65535" in capsys.readouterr().err
    with pytest.raises(Invalid, match="not valid YAML"):
        path.write_text("mqtt: [unclosed")
        load_config(path)
