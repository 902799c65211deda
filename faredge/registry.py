"""The device registry: who exists, how it connects, its twin; persisted as snapshot + journal.

A change (birth, online/offline, twin; never telemetry, which lives in `faredge.live`) costs
O(1): the changed device is appended as one JSON line to `<registry>.journal`. `flush()` makes
everything appended so far durable with one fsync (group commit); the router calls it once per
batch, before it acknowledges the batch's QoS 1 messages, and before answering a `set`. When the
journal holds more lines than max(1024, 2 x devices) it is folded into the snapshot, which is
rewritten whole through a temporary file, fsync and rename (a crash leaves the old or the new
one), and the journal starts empty. Loading replays the journal over the snapshot (the last
line of a device wins); a torn last line (a crash mid-append, never acknowledged) is ignored.

Rewriting the whole file on every birth made a reconnect storm quadratic (2,000 births: 54.7 s).
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from faredge.errors import Dropped, Invalid, NotFound
from faredge.ota.rollout import OtaState
from faredge.protocol.messages import FreqCaps, parse_freq_caps
from faredge.twin import Twin

FORMAT = 1
DEFAULT_CAPACITY = 10_000
COMPACT_MIN_LINES = 1024


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
    freqs: FreqCaps | None = None  # from the last birth: the CPU frequencies the board accepts
    twin: Twin = field(default_factory=Twin)
    ota: OtaState | None = None  # the latest over-the-air update (faredge.ota)
    mpy: int = 0  # from the last birth: sys.implementation._mpy (what an OTA compiles for)

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
            "caps": {} if self.freqs is None else {"freq_hz": self.freqs.to_json()},
            "twin": self.twin.to_json(),
            "ota": None if self.ota is None else self.ota.to_json(),
            "mpy": self.mpy,
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
            freqs=_caps(data.get("caps")),
            twin=Twin.from_json(data.get("twin", {})),
            ota=OtaState.from_json(data["ota"]) if isinstance(data.get("ota"), dict) else None,
            mpy=int(data.get("mpy", 0)),
        )


def _caps(data: Any) -> FreqCaps | None:
    try:
        return parse_freq_caps(data)
    except Dropped:
        return None  # written by us; a hand-edited bad value only loses the up-front check


class Registry:
    """Thread-safe map id → Device, persisted to `path` (None: in memory only, for tests)."""

    def __init__(self, path: Path | None, max_devices: int = DEFAULT_CAPACITY) -> None:
        self._path = path
        self._journal_path = path.with_name(path.name + ".journal") if path else None
        self._max = max_devices
        self._lock = threading.Lock()
        self._journal: IO[str] | None = None
        self._lines = 0
        self._dirty = False
        self._devices: dict[str, Device] = self._load() if path else {}

    def _load(self) -> dict[str, Device]:
        assert self._path is not None and self._journal_path is not None
        devices: dict[str, Device] = {}
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            data = {"format": FORMAT}
        except (OSError, ValueError) as exc:
            raise Invalid(str(self._path), f"unreadable registry: {exc}") from exc
        if data.get("format") != FORMAT:
            raise Invalid(str(self._path), f"registry format {data.get('format')!r}, expected {FORMAT}")
        for d in data.get("devices", []):
            devices[d["id"]] = Device.from_json(d)
        for d in self._replay():
            devices[d.id] = d
        # Nothing is online until it says so again after a restart.
        return {k: replace(d, online=False) for k, d in devices.items()}

    def _replay(self) -> list[Device]:
        assert self._journal_path is not None
        try:
            lines = self._journal_path.read_text().split("\n")
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise Invalid(str(self._journal_path), f"unreadable journal: {exc}") from exc
        out = []
        last = len(lines) - 1
        for i, line in enumerate(lines):
            if not line:
                continue
            try:
                out.append(Device.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError) as exc:
                if i == last:  # torn by a crash mid-append: it was never acknowledged
                    break
                raise Invalid(str(self._journal_path), f"line {i + 1} unreadable: {exc}") from exc
        self._lines = len(out)
        return out

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
        """Store a device and append it to the journal (durable at the next `flush()`)."""
        with self._lock:
            if device.id not in self._devices and len(self._devices) >= self._max:
                raise Invalid("devices", f"registry is full ({self._max} devices)")
            self._devices[device.id] = device
            if self._journal_path is None:
                return
            if self._journal is None:  # line-buffered: a crashed process loses nothing written
                self._journal_path.parent.mkdir(parents=True, exist_ok=True)
                self._journal = open(self._journal_path, "a", buffering=1)  # noqa: SIM115
            self._journal.write(json.dumps(device.to_json(), sort_keys=True, separators=(",", ":")) + "\n")
            self._lines += 1
            self._dirty = True
            if self._lines >= max(COMPACT_MIN_LINES, 2 * len(self._devices)):
                self._compact()

    def flush(self) -> None:
        """Make every change so far durable (one fsync for all of them): call before
        acknowledging anything that depends on them."""
        with self._lock:
            if self._dirty and self._journal is not None:
                self._journal.flush()
                os.fsync(self._journal.fileno())
                self._dirty = False

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._journal is not None:
                self._journal.close()
                self._journal = None

    def _compact(self) -> None:
        """Fold the journal into a new snapshot (amortised O(1) per change), then empty it."""
        assert self._path is not None and self._journal_path is not None
        data = {"format": FORMAT, "devices": [d.to_json() for d in self._devices.values()]}
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_name(f".{self._path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as fh:
            json.dump(data, fh, separators=(",", ":"), sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)
        _fsync_dir(self._path.parent)
        if self._journal is not None:
            self._journal.close()
        self._journal = open(self._journal_path, "w", buffering=1)  # noqa: SIM115 (emptied)
        _fsync_dir(self._path.parent)
        self._lines = 0
        self._dirty = False


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
