"""Config validation (firmware/micropython/config.py) inside MicroPython."""

import config

GOOD = {"id": "dev-1", "board": "esp32", "transport": "mqtt", "mqtt": {"host": "10.0.0.1"}}


def _err(cfg):
    try:
        config.check(cfg)
    except config.ConfigError as e:
        return e.field, str(e)
    raise AssertionError("accepted " + repr(cfg))


def test_defaults_filled_in():
    c = config.check(GOOD)
    assert c["interval_ms"] == 5000 and c["batch"] == 1
    assert c["mqtt"]["port"] == 1883 and c["mqtt"]["keepalive"] == 60
    assert c["mqtt"]["user"] == "dev-1" and c["serial"]["baud"] == 115200


def test_slow_serial_lines_batch_by_default():
    cfg = {"id": "d", "board": "rp2040", "transport": "serial", "serial": {"baud": 9600}}
    assert config.check(cfg)["batch"] == 4
    cfg["batch"] = 1
    assert config.check(cfg)["batch"] == 1
    cfg = {"id": "d", "board": "rp2040", "transport": "serial", "serial": {"baud": 921600}}
    assert config.check(cfg)["batch"] == 1


def test_each_bad_field_is_named():
    cases = (
        ({"id": "a/b"}, "id"),
        ({"id": ""}, "id"),
        ({"id": 5}, "id"),
        ({"board": "avr"}, "board"),
        ({"transport": "lora"}, "transport"),
        ({"interval_ms": 10}, "interval_ms"),
        ({"batch": True}, "batch"),
        ({"sensors": "temp"}, "sensors"),
        ({"mqtt": {"port": 1883}}, "mqtt.host"),
        ({"mqtt": {"host": "h", "port": 70000}}, "mqtt.port"),
        ({"mqtt": {"host": "h", "tls": "yes"}}, "mqtt.tls"),
        ({"mqtt": {"host": "h", "password": 7}}, "mqtt.password"),
        ({"serial": {"baud": 10}}, "serial.baud"),
        ({"serial": 1}, "serial"),
    )
    for patch, field in cases:
        cfg = dict(GOOD)
        cfg.update(patch)
        got, msg = _err(cfg)
        assert got == field, (patch, got)
        assert msg.startswith(field + ": ")


def test_input_is_not_modified():
    cfg = {"id": "d", "board": "virtual", "transport": "serial"}
    config.check(cfg)
    assert cfg == {"id": "d", "board": "virtual", "transport": "serial"}


def test_load_reports_unreadable_and_invalid_json():
    assert _load_err("/no/such.json") == "config"
    with open("/bad.json", "w") as f:
        f.write("{nope")
    assert _load_err("/bad.json") == "config"


def _load_err(path):
    try:
        config.load(path)
    except config.ConfigError as e:
        return e.field
    raise AssertionError("loaded " + path)


def test_ota_key_is_64_hex_digits():
    assert config.check(dict(GOOD, ota_key="ab" * 32))["ota_key"] == "ab" * 32
    for bad in ("ab" * 31, "zz" * 32, 5):
        assert _err(dict(GOOD, ota_key=bad))[0] == "ota_key", bad
