"""The bridge's side of over-the-air updates: builds and signs each device's release, answers
its chunk requests, follows its status reports, and runs fleet rollouts (canary first).

`OtaService` does no I/O of its own: messages come in through `on_message` (from the OTA MQTT
link, any thread), go out through a `Publisher`, and every state change is stored through
`RolloutStore.update_ota` (the router: under its lock, durable before anything depends on it).
Chunk progress is kept in memory and stored at most once a second; state changes always are.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from faredge.deploy.release import Release, Target, build, check_app, mpy_version
from faredge.errors import Dropped, Invalid, NotFound
from faredge.ota import rollout
from faredge.ota.chunks import ChunkRequest, answer, parse_request, parse_status
from faredge.ota.manifest import KeyStore, Manifest, ota_files, sign
from faredge.ota.rollout import OtaState
from faredge.protocol.topics import topic
from faredge.registry import Device

log = logging.getLogger(__name__)

EPOCH = 1_735_689_600  # 2025-01-01: release numbers are seconds since, and above the last one
PROGRESS_EVERY_S = 1.0


class Publisher(Protocol):
    def publish(self, name: str, payload: bytes, qos: int, retain: bool = False) -> None: ...


class RolloutStore(Protocol):
    def update_ota(self, device_id: str, change: Callable[[Device], OtaState | None]) -> Device | None: ...


class Counters(Protocol):
    """What the service counts (faredge.metrics.BridgeMetrics.ota_*)."""

    def chunk(self, size: int) -> None: ...
    def finished(self, state: str) -> None: ...
    def refused(self, reason: str) -> None: ...


@dataclass(frozen=True)
class Job:
    manifest: Manifest
    payload: bytes  # the signed manifest as sent
    files: tuple[bytes, ...]  # contents, in the manifest's order
    starts: tuple[int, ...]  # each file's first byte counted over the whole release


def release_number(previous: OtaState | None, now: float) -> int:
    """Monotonic without a counter to lose: the clock, and always above the last one."""
    return max(int(now) - EPOCH, (previous.release if previous else 0) + 1)


def make_job(release: Release, device: str, number: int, key: bytes) -> Job:
    files = ota_files(release)
    data = {f.name: f.data for f in release.files}
    manifest = Manifest(device, number, release.version, files)
    starts, total = [], 0
    for f in files:
        starts.append(total)
        total += f.size
    return Job(manifest, sign(manifest, key), tuple(data[f.name] for f in files), tuple(starts))


class OtaService:
    def __init__(
        self,
        store: RolloutStore,
        devices: Callable[[], Iterable[Device]],
        keys: KeyStore,
        publisher: Publisher,
        counters: Counters,
        *,
        clock: Callable[[], float] = time.time,
        builder: Callable[[Path, Target], Release] = build,
        timeout_s: float = 600.0,
    ) -> None:
        self._store = store
        self._devices = devices
        self._keys = keys
        self._pub = publisher
        self._counters = counters
        self._clock = clock
        self._build = builder
        self.timeout_s = timeout_s
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}
        self._fleets: dict[str, rollout.Fleet] = {}  # device -> the rollout it is part of
        self._progress: dict[str, tuple[int, float]] = {}  # device -> (bytes, last stored)

    def start(self) -> None:
        """Updates a previous run of the bridge left unfinished end `failed(bridge restarted)`:
        their chunks lived in that process. Their retained manifests are cleared, so no board
        starts on them again; run them anew with `update`."""
        now = self._clock()

        def abandoned(d: Device) -> OtaState | None:
            return rollout.failed(d.ota, "bridge restarted", now) if d.ota and not d.ota.finished else None

        for device in [d.id for d in self._devices() if d.ota is not None and not d.ota.finished]:
            if self._set(device, abandoned) is not None:
                self._pub.publish(topic(device, "ota/manifest"), b"", 1, True)
                self._counters.finished(rollout.FAILED)

    def stop(self) -> None:
        """Nothing to stop: the part of `Bridge.start()`'s order that runs `start()`."""

    def device_key(self, device_id: str) -> bytes:
        """The key the device's config carries as `ota_key` (hex)."""
        return self._keys.key(device_id)

    # -- starting ---------------------------------------------------------------------------
    def update(
        self, ids: list[str] | None, app_dir: Path, *, parallel: int = 4, max_failures: int = 1
    ) -> dict[str, Any]:
        """Start a rollout of `app_dir` to `ids` (None: every MQTT device); the plan as JSON.
        Everything is built and signed before the first device hears of it."""
        check_app(app_dir)
        known = {d.id: d for d in self._devices()}
        if ids is None:
            ids = sorted(d for d, dev in known.items() if dev.transport == "mqtt")
        for i in ids:
            if i not in known:
                raise NotFound(f"unknown device {i!r}")
            if known[i].transport != "mqtt":
                raise Invalid(i, "over-the-air updates need the MQTT transport (use devices deploy)")
        if not ids:
            raise Invalid("devices", "no MQTT device to update")
        releases: dict[Target, Release] = {}
        now = self._clock()
        jobs = {}
        for i in ids:
            # compiled for the .mpy version the board's birth reported (source when it reported none)
            target = Target(mpy_version(known[i].mpy or None), known[i].board or None)
            rel = releases.get(target)
            if rel is None:
                rel = releases[target] = self._build(app_dir, target)
            jobs[i] = make_job(rel, i, release_number(known[i].ota, now), self._keys.key(i))
        fleet = rollout.Fleet(ids, parallel=parallel, max_failures=max_failures)
        with self._lock:
            busy = [i for i in ids if i in self._jobs]
            if busy:
                raise Invalid("devices", f"an update is already running on {', '.join(busy)}")
            self._jobs.update(jobs)
            for i in ids:
                self._fleets[i] = fleet
        for i, job in jobs.items():
            self._set(i, _pending(job.manifest, now))
        self._advance(fleet)
        return {
            "devices": [
                {"id": i, "release": j.manifest.release, "version": j.manifest.version}
                for i, j in jobs.items()
            ],
            "canary": ids[0],
        }

    def _advance(self, fleet: rollout.Fleet) -> None:
        with self._lock:
            start = fleet.next()
            stopped = fleet.waiting if fleet.stopped else []
        for device in start:
            self._send_manifest(device)
        now = self._clock()

        def stop(d: Device) -> OtaState | None:
            return rollout.failed(d.ota, "stopped", now) if d.ota and not d.ota.finished else None

        for device in stopped:
            self._end(device, stop)

    def _send_manifest(self, device: str) -> None:
        """Retained: a board offline now gets it when it connects, and again after every
        reconnect until the update ends (it resumes from what its flash holds)."""
        job = self._jobs.get(device)
        if job is not None:
            self._pub.publish(topic(device, "ota/manifest"), job.payload, 1, True)

    # -- from the board ---------------------------------------------------------------------
    def on_request(self, device: str, payload: bytes) -> None:
        """`ota/get` from `device` (the topic's id: the broker's ACL makes it the sender)."""
        self._chunk(device, parse_request(payload))

    def on_status(self, device: str, payload: bytes) -> None:
        """`ota/status` from `device`; Dropped for a malformed one."""
        self._status(device, payload)

    def _running(self, device: str) -> bool:
        with self._lock:
            fleet = self._fleets.get(device)
            return device in self._jobs and fleet is not None and device in fleet.started

    def _chunk(self, device: str, req: ChunkRequest) -> None:
        job = self._jobs.get(device)
        if (
            job is None
            or req.device != device
            or req.release != job.manifest.release
            or not self._running(device)
        ):
            raise Dropped("ota_request", f"no update {req.release} running for {device}")
        data = answer(req, job.files)
        self._pub.publish(topic(device, "ota/chunk"), data, 0)
        self._counters.chunk(req.length)
        done = job.starts[req.file] + req.offset + req.length
        now = self._clock()
        last = self._progress.get(device, (0, 0.0))[1]
        self._progress[device] = (done, last)
        if now - last >= PROGRESS_EVERY_S or done == job.manifest.size:
            self._progress[device] = (done, now)
            self._set(device, lambda d: rollout.progressed(d.ota, done, now) if d.ota else None)

    def _status(self, device: str, payload: bytes) -> None:
        rep = parse_status(payload)
        job = self._jobs.get(device)
        now = self._clock()
        if job is not None and rep.state == "confirmed" and rep.release != job.manifest.release:
            if self._running(device):  # it ignored the manifest during a trial it just confirmed
                self._send_manifest(device)
            return
        if rep.state == "failed" and (job is None or rep.release != job.manifest.release):
            self._counters.refused(rep.reason.partition(":")[0])  # a manifest we did not send now
            log.warning("%s refused OTA release %d: %s", device, rep.release, rep.reason)
            return
        new = self._set(
            device,
            lambda d: rollout.reported(d.ota, rep.state, rep.release, rep.reason, now) if d.ota else None,
        )
        if new is not None and new.ota is not None and new.ota.finished:
            self._finish(device, new.ota.state)

    def _end(self, device: str, change: Callable[[Device], OtaState | None]) -> None:
        new = self._set(device, change)
        if new is not None and new.ota is not None:
            self._finish(device, new.ota.state)

    def _finish(self, device: str, state: str) -> None:
        self._pub.publish(topic(device, "ota/manifest"), b"", 1, True)  # no retained manifest left
        with self._lock:
            self._jobs.pop(device, None)
            self._progress.pop(device, None)
            fleet = self._fleets.pop(device, None)
            if fleet is not None:
                fleet.finish(device, state)
        self._counters.finished(state)
        log.info("OTA of %s ended: %s", device, state)
        if fleet is not None:
            self._advance(fleet)

    def _set(self, device: str, change: Callable[[Device], OtaState | None]) -> Device | None:
        return self._store.update_ota(device, change)

    # -- time -------------------------------------------------------------------------------
    def tick(self) -> None:
        """Fail updates that made no progress for `timeout_s` (a board that never came back)."""
        now = self._clock()
        with self._lock:
            jobs = list(self._jobs)
        for device in [d for d in jobs if self._running(d)]:  # waiting ones have not begun
            if now - self._progress.get(device, (0, 0.0))[1] < self.timeout_s:
                continue
            self._end(device, lambda d: self._expired(d, now))

    def _expired(self, d: Device, now: float) -> OtaState | None:
        if d.ota is None or d.ota.finished or now - d.ota.since < self.timeout_s:
            return None
        return rollout.failed(d.ota, "timeout", now)


def _pending(m: Manifest, now: float) -> Callable[[Device], OtaState]:
    return lambda _d: OtaState(m.release, m.version, total_bytes=m.size, since=now)
