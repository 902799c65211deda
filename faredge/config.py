"""The bridge's YAML configuration: parsed once, validated whole, frozen.

Every key below is documented in docs/faredge-bridge.md (the example there is `EXAMPLE`, kept in
sync by a test). Unknown keys are errors (a typo must not silently fall back to a default), and
every error names the dotted key: `mqtt.port: 70000 is outside 1..65535`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from faredge.errors import Invalid
from faredge.protocol.messages import check_device_id
from mlsysops.nodeapi import DEFAULT_TARGET

EXAMPLE = """\
state_dir: /var/lib/mlsysops/faredge      # registry.json (devices and twins) lives here
control_socket: /run/mlsysops-faredge/faredge.sock  # used by `mlsysops devices`
log_interval_s: 60                        # bad input is logged once per device and reason per interval
queue_size: 10000                         # inbound queue (messages), see "Queues"
max_devices: 10000                        # registry capacity; births beyond it are dropped (counted)
max_message_bytes: 4096                   # larger MQTT payloads are dropped (serial: 1024 by the frame)
metrics:
  listen: "127.0.0.1:9465"                # Prometheus endpoint; "" disables it
  max_device_labels: 200                  # devices with their own label value; others: "other"
mqtt:                                     # omit (or null) for a serial-only bridge
  host: 127.0.0.1
  port: 1883
  client_id: mlsysops-faredge             # the broker replaces it with the username (the session name)
  username: faredge
  password_file: /etc/mlsysops/faredge/bridge.password
  keepalive_s: 30
  broker_log: /var/log/mosquitto/mosquitto.log  # optional: count takeovers and refused logins
  tls:                                    # optional
    ca_file: /etc/mlsysops/faredge/ca.crt
    cert_file: /etc/mlsysops/faredge/bridge.crt   # optional client certificate
    key_file: /etc/mlsysops/faredge/bridge.key
serial:                                   # omit for an MQTT-only bridge
  scan_interval_s: 1.0                    # how often absent ports are looked for (hot-plug)
  liveness_min_s: 10                      # offline after 3 x sampling interval, at least this
  retry_ms: 200                           # first retransmission delay of reliable frames
  ports:
    - path: /dev/ttyACM0
      baudrate: 115200
    - usb: {vid: 0x2e8a, pid: 0x0005, serial_number: "E660583883265A2D"}
      id: greenhouse-3                    # optional: the only device id accepted on this port
nodeagent:
  target: unix:/run/mlsysops/nodeagent.sock   # "" disables inventory reports
  debounce_s: 0.5
"""


@dataclass(frozen=True)
class TlsSettings:
    ca_file: str
    cert_file: str = ""
    key_file: str = ""


@dataclass(frozen=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "mlsysops-faredge"
    username: str = ""
    password: str = ""
    tls: TlsSettings | None = None
    keepalive_s: int = 30
    reconnect_min_s: float = 0.5
    reconnect_max_s: float = 30.0
    broker_log: str = ""  # the broker's log file: takeovers and refused logins are counted from it


@dataclass(frozen=True)
class PortSpec:
    path: str = ""
    vid: int | None = None
    pid: int | None = None
    serial_number: str = ""
    id: str | None = None  # expected device id; None: learned from the device's birth
    baudrate: int = 115200

    def __post_init__(self) -> None:
        if not self.path and self.vid is None and self.pid is None and not self.serial_number:
            raise Invalid("serial.ports[]", "give a path or a USB vid/pid/serial_number")
        if self.baudrate <= 0:
            raise Invalid("serial.ports[].baudrate", f"{self.baudrate} is not a baud rate")

    @property
    def name(self) -> str:
        if self.path:
            return self.path
        vid = f"{self.vid:04x}" if self.vid is not None else "*"
        pid = f"{self.pid:04x}" if self.pid is not None else "*"
        return f"usb:{vid}:{pid}:{self.serial_number or '*'}"


@dataclass(frozen=True)
class SerialSettings:
    ports: tuple[PortSpec, ...] = ()
    scan_interval_s: float = 1.0
    liveness_min_s: float = 10.0
    retry_ms: int = 200


@dataclass(frozen=True)
class Config:
    state_dir: Path = Path("/var/lib/mlsysops/faredge")
    control_socket: Path = Path("/run/mlsysops-faredge/faredge.sock")
    log_interval_s: float = 60.0
    queue_size: int = 10000
    max_devices: int = 10_000
    max_message_bytes: int = 4096
    metrics_listen: str = "127.0.0.1:9465"
    max_device_labels: int = 200
    mqtt: MqttSettings | None = None
    serial: SerialSettings | None = None
    nodeagent_target: str = DEFAULT_TARGET
    nodeagent_debounce_s: float = 0.5


class _Section:
    """Reads typed keys off one mapping; remembers which were used to reject unknown ones."""

    def __init__(self, data: Any, path: str) -> None:
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise Invalid(path or "config", "must be a mapping")
        self.data, self.path = data, path
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def get(
        self, name: str, kind: type, default: Any, check: Callable[[Any], str | None] | None = None
    ) -> Any:
        self.used.add(name)
        value = self.data.get(name, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise Invalid(self.key(name), f"must be {kind.__name__}, got {value!r}")
        problem = check(value) if check else None
        if problem:
            raise Invalid(self.key(name), problem)
        return value

    def optional(self, name: str, kind: type, check: Callable[[Any], str | None] | None = None) -> Any:
        """Like get, but absent means None (not a default value)."""
        if self.data.get(name) is None:
            self.used.add(name)
            return None
        return self.get(name, kind, None, check)

    def sub(self, name: str) -> _Section | None:
        self.used.add(name)
        if self.data.get(name) is None:
            return None
        return _Section(self.data[name], self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise Invalid(self.key(unknown[0]), "unknown key")


def _range(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"{v} is outside {lo}..{hi}"


def _nonempty(v: str) -> str | None:
    return None if v else "must not be empty"


def _mqtt(s: _Section, base: Path) -> MqttSettings:
    password = s.get("password", str, "")
    pw_file = s.get("password_file", str, "")
    if pw_file:
        try:
            password = (base / pw_file).read_text().strip()
        except OSError as exc:
            raise Invalid(s.key("password_file"), f"cannot read: {exc.strerror}") from None
    tls = None
    t = s.sub("tls")
    if t is not None:
        tls = TlsSettings(
            ca_file=str(base / t.get("ca_file", str, "", _nonempty)),
            cert_file=str(base / c) if (c := t.get("cert_file", str, "")) else "",
            key_file=str(base / k) if (k := t.get("key_file", str, "")) else "",
        )
        if bool(tls.cert_file) != bool(tls.key_file):
            raise Invalid(t.key("key_file"), "cert_file and key_file go together")
        t.done()
    settings = MqttSettings(
        host=s.get("host", str, "127.0.0.1", _nonempty),
        port=s.get("port", int, 1883, _range(1, 65535)),
        client_id=s.get("client_id", str, "mlsysops-faredge", _nonempty),
        username=s.get("username", str, ""),
        password=password,
        tls=tls,
        keepalive_s=s.get("keepalive_s", int, 30, _range(5, 3600)),
        broker_log=str(base / b) if (b := s.get("broker_log", str, "")) else "",
    )
    s.done()
    return settings


def _port(data: Any, path: str) -> PortSpec:
    s = _Section(data, path)
    device_id = s.get("id", str, "") or None
    if device_id is not None:
        check_device_id(device_id, s.key("id"))
    usb = s.sub("usb")
    kwargs: dict[str, Any] = {}
    if usb is not None:
        kwargs = {
            "vid": usb.optional("vid", int, _range(0, 0xFFFF)),
            "pid": usb.optional("pid", int, _range(0, 0xFFFF)),
            "serial_number": usb.get("serial_number", str, ""),
        }
        if not any(kwargs.values()):
            raise Invalid(usb.path, "give at least one of vid, pid, serial_number")
        usb.done()
    spec_path = s.get("path", str, "")
    if bool(spec_path) == (usb is not None):
        raise Invalid(path, "give exactly one of path or usb")
    spec = PortSpec(
        path=spec_path,
        id=device_id,
        baudrate=s.get("baudrate", int, 115200, _range(300, 16_000_000)),
        **kwargs,
    )
    s.done()
    return spec


def _serial(s: _Section) -> SerialSettings:
    ports = s.data.get("ports", [])
    s.used.add("ports")
    if not isinstance(ports, list):
        raise Invalid(s.key("ports"), "must be a list")
    specs = tuple(_port(p, f"{s.key('ports')}[{i}]") for i, p in enumerate(ports))
    names = [p.name for p in specs]
    if len(set(names)) != len(names):
        raise Invalid(s.key("ports"), "the same port is listed twice")
    settings = SerialSettings(
        ports=specs,
        scan_interval_s=s.get("scan_interval_s", float, 1.0, _range(0.01, 60)),
        liveness_min_s=s.get("liveness_min_s", float, 10.0, _range(0.1, 3600)),
        retry_ms=s.get("retry_ms", int, 200, _range(10, 10_000)),
    )
    s.done()
    return settings


def parse_config(data: Any, base: Path = Path(".")) -> Config:
    """Validate a loaded YAML document; relative file names are relative to `base`."""
    s = _Section(data, "")
    metrics = s.sub("metrics") or _Section({}, "metrics")
    mqtt, serial, agent = s.sub("mqtt"), s.sub("serial"), s.sub("nodeagent") or _Section({}, "nodeagent")
    config = Config(
        state_dir=base / s.get("state_dir", str, "/var/lib/mlsysops/faredge", _nonempty),
        control_socket=base / s.get("control_socket", str, "/run/mlsysops-faredge/faredge.sock", _nonempty),
        log_interval_s=s.get("log_interval_s", float, 60.0, _range(0.0, 86400)),
        queue_size=s.get("queue_size", int, 10000, _range(100, 10_000_000)),
        max_devices=s.get("max_devices", int, 10_000, _range(1, 1_000_000)),
        max_message_bytes=s.get("max_message_bytes", int, 4096, _range(256, 1 << 20)),
        metrics_listen=metrics.get("listen", str, "127.0.0.1:9465", _listen),
        max_device_labels=metrics.get("max_device_labels", int, 200, _range(1, 100_000)),
        mqtt=_mqtt(mqtt, base) if mqtt else None,
        serial=_serial(serial) if serial else None,
        nodeagent_target=agent.get("target", str, DEFAULT_TARGET),
        nodeagent_debounce_s=agent.get("debounce_s", float, 0.5, _range(0.0, 60)),
    )
    metrics.done()
    agent.done()
    s.done()
    return config


def _listen(v: str) -> str | None:
    if not v:
        return None
    host, sep, port = v.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        return f"{v!r} is not host:port"
    return None


def load_config(path: Path) -> Config:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise Invalid(str(path), f"cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise Invalid(str(path), f"not valid YAML: {exc}") from None
    return parse_config(data, path.parent)
