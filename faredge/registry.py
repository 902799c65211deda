"""The device registry: who exists, how it connects, its twin; persisted atomically.

The file is rewritten whole through a temporary file, fsync and rename, so a crash leaves the old
or the new registry, never half of one. It is saved on structural changes (birth, online/offline,
twin), not on telemetry: the latest readings live in memory (`faredge.live`) and the metrics,
and the bridge survives a restart knowing every device and its twin.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from faredge.errors import Invalid, NotFound
from faredge.twin import Twin

FORMAT = 1


@dataclass(frozen=True)
class Device:
    id: str
    transport: str = ""  # "mqtt" or "serial"
    board: str = ""
    fw: str = ""
    boot: int = 0
    sensors: tuple[str, ...] = ()
    online: bool = False
    last_seen: float = 0.0  # wall clock, seconds
    port: str = ""  # serial port path when transport == "serial"
    telemetry_lost: int = 0  # from the last birth: QoS 1 telemetry the device had to drop
    twin: Twin = field(default_factory=Twin)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "transport": self.transport,
            "board": self.board,
            "fw": self.fw,
            "boot": self.boot,
            "sensors": list(self.sensors),
            "online": self.online,
            "last_seen": self.last_seen,
            "port": self.port,
            "telemetry_lost": self.telemetry_lost,
            "twin": self.twin.to_json(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Device:
        return cls(
            id=str(data["id"]),
            transport=str(data.get("transport", "")),
            board=str(data.get("board", "")),
            fw=str(data.get("fw", "")),
            boot=int(data.get("boot", 0)),
            sensors=tuple(data.get("sensors", ())),
            online=bool(data.get("online", False)),
            last_seen=float(data.get("last_seen", 0.0)),
            port=str(data.get("port", "")),
            telemetry_lost=int(data.get("telemetry_lost", 0)),
            twin=Twin.from_json(data.get("twin", {})),
        )


class Registry:
    """Thread-safe map id → Device, persisted to `path` (None: in memory only, for tests)."""

    def __init__(self, path: Path | None, max_devices: int = 1000) -> None:
        self._path = path
        self._max = max_devices
        self._lock = threading.Lock()
        self._devices: dict[str, Device] = self._load() if path else {}

    def _load(self) -> dict[str, Device]:
        assert self._path is not None
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise Invalid(str(self._path), f"unreadable registry: {exc}") from exc
        if data.get("format") != FORMAT:
            raise Invalid(str(self._path), f"registry format {data.get('format')!r}, expected {FORMAT}")
        # Nothing is online until it says so again after a restart.
        return {d["id"]: replace(Device.from_json(d), online=False) for d in data.get("devices", [])}

    def get(self, device_id: str) -> Device:
        with self._lock:
            try:
                return self._devices[device_id]
            except KeyError:
                raise NotFound(f"unknown device {device_id!r}") from None

    def find(self, device_id: str) -> Device | None:
        return self._devices.get(device_id)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self._devices

    def __iter__(self) -> Iterator[Device]:
        with self._lock:
            return iter(sorted(self._devices.values(), key=lambda d: d.id))

    def __len__(self) -> int:
        return len(self._devices)

    @property
    def full(self) -> bool:
        return len(self._devices) >= self._max

    def put(self, device: Device) -> None:
        """Store a device and persist the registry (telemetry never comes here: faredge.live)."""
        with self._lock:
            if device.id not in self._devices and len(self._devices) >= self._max:
                raise Invalid("devices", f"registry is full ({self._max} devices)")
            self._devices[device.id] = device
            self._save()

    def _save(self) -> None:
        if self._path is None:
            return
        data = {"format": FORMAT, "devices": [d.to_json() for d in self._devices.values()]}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
