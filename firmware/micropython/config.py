"""Device identity, credentials and settings: /config.json, checked as a whole before boot.

The rules are data (`_RULES`): one row per field with its type, default and range, so a bad
config is refused with "field: reason" before the device touches the UART or the network.
The ranges of the twin settings a config may also set come from twin.RANGES (one copy).
"""

import json

from twin import RANGES

BOARDS = ("esp32", "rp2040", "stm32", "virtual")
SLOW_BAUD = 115200  # below this, serial telemetry is batched by default
_ID_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."


class ConfigError(ValueError):
    """A config field is missing or wrong; `field` names it (dotted for nested fields)."""

    def __init__(self, field, reason):
        super().__init__(f"{field}: {reason}")
        self.field = field


# (field, type, default (None = required), low, high)
_RULES = (
    ("interval_ms", int, 5000) + RANGES["interval_ms"],
    ("batch", int, 1) + RANGES["batch"],
)
_SERIAL = (("baud", int, 115200, 1200, 4000000), ("uart", int, 0, 0, 8))
_MQTT = (("port", int, 1883, 1, 65535), ("keepalive", int, 60, 10, 3600), ("qos_telemetry", int, 0, 0, 1))


def check_id(v):
    """Device ids are also MQTT topic levels and usernames: a safe, short alphabet only."""
    if not isinstance(v, str) or not 0 < len(v) <= 32:
        return "must be a string of 1..32 characters"
    if v[0] == ".":
        return "must not start with '.'"
    for c in v:
        if c not in _ID_CHARS:
            return f"character {c!r} not allowed (use letters, digits, '-', '_', '.')"
    return None


def _hex(s):
    try:
        return bytes.fromhex(s)
    except ValueError:
        return None


def _ints(src, dst, rules, prefix):
    for name, typ, default, lo, hi in rules:
        v = src.get(name, default)
        if type(v) is not typ or not lo <= v <= hi:
            raise ConfigError(prefix + name, f"must be an integer in {lo}..{hi}")
        dst[name] = v


def _section(cfg, name):
    sec = cfg.get(name, {})
    if not isinstance(sec, dict):
        raise ConfigError(name, "must be an object")
    return dict(sec)


def check(cfg):
    """Return a normalised copy of `cfg` with defaults filled in, or raise ConfigError."""
    if not isinstance(cfg, dict):
        raise ConfigError("config", "must be a JSON object")
    out = dict(cfg)
    reason = check_id(cfg.get("id"))
    if reason:
        raise ConfigError("id", reason)
    if cfg.get("board") not in BOARDS:
        raise ConfigError("board", "must be one of " + ", ".join(BOARDS))
    if cfg.get("transport") not in ("serial", "mqtt"):
        raise ConfigError("transport", "must be 'serial' or 'mqtt'")
    _ints(cfg, out, _RULES, "")
    sensors = cfg.get("sensors")
    if sensors is not None and (
        not isinstance(sensors, list) or not all(isinstance(s, str) for s in sensors)
    ):
        raise ConfigError("sensors", "must be a list of sensor names")
    k = cfg.get("ota_key")  # the device's OTA key (faredge/ota/manifest.py: device_key)
    if k is not None and not (isinstance(k, str) and len(k) == 64 and _hex(k)):
        raise ConfigError("ota_key", "must be 64 hex digits")
    ser = out["serial"] = _section(cfg, "serial")
    _ints(ser, ser, _SERIAL, "serial.")
    if "batch" not in cfg and cfg["transport"] == "serial" and ser["baud"] < SLOW_BAUD:
        out["batch"] = 4  # a slow line spends less on framing and JSON keys when batching
    m = out["mqtt"] = _section(cfg, "mqtt")
    _ints(m, m, _MQTT, "mqtt.")
    if cfg["transport"] == "mqtt":
        if not isinstance(m.get("host"), str) or not m["host"]:
            raise ConfigError("mqtt.host", "required for the mqtt transport")
        m.setdefault("user", cfg["id"])
        for k in ("user", "password", "ca"):
            if m.get(k) is not None and not isinstance(m[k], str):
                raise ConfigError("mqtt." + k, "must be a string")
        if not isinstance(m.get("tls", False), bool):
            raise ConfigError("mqtt.tls", "must be true or false")
    return out


def load(path="/config.json"):
    try:
        with open(path) as f:
            cfg = json.load(f)
    except OSError:
        raise ConfigError("config", "cannot read " + path) from None
    except ValueError:
        raise ConfigError("config", "not valid JSON") from None
    return check(cfg)
