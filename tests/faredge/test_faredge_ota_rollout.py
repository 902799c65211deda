"""OTA rollouts, pure: state transitions, the fleet's order (canary, parallel, stop on failure),
the chunk protocol, and the bridge's OTA service driven by fake stores and publishers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from faredge.deploy.release import FileEntry, Release, Target
from faredge.errors import Dropped, Invalid, NotFound
from faredge.ota import rollout
from faredge.ota.chunks import ChunkRequest, answer, parse_request, parse_status
from faredge.ota.manifest import SIG_LEN, KeyStore, verify
from faredge.ota.rollout import OtaState
from faredge.ota.service import EPOCH, OtaService, release_number
from faredge.registry import Device

NOW = EPOCH + 1000.0


def test_board_reports_move_the_state_and_ignore_other_releases() -> None:
    s = OtaState(7, "1.1", total_bytes=100)
    s = rollout.progressed(s, 40, NOW)
    assert (s.state, s.done_bytes) == ("downloading", 40)
    assert rollout.reported(s, "verifying", 8, "", NOW) is None  # another release's news
    assert rollout.reported(s, "nonsense", 7, "", NOW) is None
    s2 = rollout.reported(s, "installed", 7, "", NOW)
    assert s2 is not None and (s2.state, s2.done_bytes) == ("rebooting", 100)
    bad = rollout.reported(s, "failed", 7, "hash:app.py", NOW)
    assert bad is not None and bad.label() == "failed(hash:app.py)" and bad.finished
    assert rollout.reported(bad, "confirmed", 7, "", NOW) is None  # nothing after the end
    assert OtaState.from_json(bad.to_json()) == bad
    assert OtaState.from_json({"state": "weird"}).state == "failed"


def test_fleet_starts_the_canary_alone_then_parallel_waves() -> None:
    f = rollout.Fleet(["a", "b", "c", "d", "e"], parallel=2, max_failures=1)
    assert f.next() == ["a"] and f.next() == []
    f.finish("a", "confirmed")
    assert f.next() == ["b", "c"] and f.next() == []
    f.finish("b", "confirmed")
    assert f.next() == ["d"]
    f.finish("c", "confirmed")
    f.finish("d", "confirmed")
    assert f.next() == ["e"] and not f.waiting


def test_fleet_stops_after_max_failures_and_when_the_canary_fails() -> None:
    f = rollout.Fleet(["a", "b", "c"], parallel=2, max_failures=1)
    f.next()
    f.finish("a", "rolled_back")
    assert f.stopped and f.next() == [] and f.waiting == ["b", "c"]
    f = rollout.Fleet(["a", "b", "c", "d"], parallel=2, max_failures=2)
    f.next()
    f.finish("a", "confirmed")
    f.next()
    f.finish("b", "failed")
    assert not f.stopped and f.next() == ["d"]
    f.finish("c", "failed")
    assert f.stopped


def test_chunk_requests_are_checked_and_answered_exactly() -> None:
    req = parse_request(b'{"id": "d1", "r": 5, "f": 1, "o": 2, "n": 3}')
    assert req == ChunkRequest("d1", 5, 1, 2, 3)
    assert answer(req, (b"", b"abcdefg")) == b"5 1 2\ncde"
    for bad in (
        b"nope",
        b"[]",
        b'{"id": "d1", "r": -1, "f": 0, "o": 0, "n": 1}',
        b'{"id": "d1", "r": 1, "f": 0, "o": 0, "n": 0}',
    ):
        with pytest.raises(Dropped):
            parse_request(bad)
    with pytest.raises(Dropped, match="out of range"):
        answer(ChunkRequest("d1", 5, 1, 6, 2), (b"", b"abcdefg"))
    with pytest.raises(Dropped, match="out of range"):
        answer(ChunkRequest("d1", 5, 2, 0, 1), (b"", b"abcdefg"))
    assert parse_status(b'{"id": "d1", "r": 5, "st": "failed", "why": "hash:x"}').reason == "hash:x"


def test_release_numbers_only_grow() -> None:
    assert release_number(None, NOW) == 1000
    assert release_number(OtaState(5000, "x"), NOW) == 5001


# ------------------------------------------------------------------ the service, with fakes
RELEASE = Release(
    "2.0", (FileEntry("main.py", b"boot"), FileEntry("app.py", b"A" * 5000), FileEntry("x.py", b"x"))
)


class Store:
    def __init__(self, *ids: str, transport: str = "mqtt") -> None:
        self.devices = {i: Device(i, transport=transport, board="virtual") for i in ids}

    def update_ota(self, device_id: str, change: Callable[[Device], OtaState | None]) -> Device | None:
        d = self.devices.get(device_id)
        new = None if d is None else change(d)
        if d is None or new is None:
            return None
        self.devices[device_id] = replace(d, ota=new)
        return self.devices[device_id]

    def state(self, device_id: str) -> OtaState:
        ota = self.devices[device_id].ota
        assert ota is not None
        return ota


class Publisher:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, int, bool]] = []

    def publish(self, name: str, payload: bytes, qos: int, retain: bool = False) -> None:
        self.sent.append((name, payload, qos, retain))

    def manifests(self) -> list[tuple[str, bytes]]:
        return [(n.split("/")[3], p) for n, p, _, _ in self.sent if n.endswith("ota/manifest") and p]


class Counts:
    def __init__(self) -> None:
        self.chunks = 0
        self.ended: list[str] = []
        self.refusals: list[str] = []

    def chunk(self, size: int) -> None:
        self.chunks += 1

    def finished(self, state: str) -> None:
        self.ended.append(state)

    def refused(self, reason: str) -> None:
        self.refusals.append(reason)


def _service(
    tmp_path: Path, store: Store, clock: list[float] | None = None
) -> tuple[OtaService, Publisher, Counts]:
    pub, counts = Publisher(), Counts()
    built: list[Target] = []

    def builder(app: Path, target: Target) -> Release:
        built.append(target)
        return RELEASE

    t = clock or [NOW]
    svc = OtaService(
        store,
        lambda: store.devices.values(),
        KeyStore(tmp_path / "k"),
        pub,
        counts,
        clock=lambda: t[0],
        builder=builder,
    )
    return svc, pub, counts


def _status(svc: OtaService, dev: str, st: str, r: int, why: str = "") -> None:
    svc.on_status(dev, json.dumps({"id": dev, "r": r, "st": st, "why": why}).encode())


def test_update_signs_per_device_sends_the_canary_and_serves_its_chunks(tmp_path: Path) -> None:
    store = Store("d1", "d2")
    svc, pub, counts = _service(tmp_path, store)
    plan = svc.update(None, tmp_path)
    assert [d["id"] for d in plan["devices"]] == ["d1", "d2"] and plan["canary"] == "d1"
    assert [d for d, _ in pub.manifests()] == ["d1"]  # the canary alone
    assert pub.sent[0][2:] == (1, True)  # QoS 1, retained: an offline board gets it on connect
    m = verify(pub.manifests()[0][1], svc.device_key("d1"), "d1")
    assert [f.name for f in m.files] == ["app.py", "x.py"] and m.release == plan["devices"][0]["release"]
    assert store.state("d1").state == "pending" and store.state("d2").state == "pending"
    svc.on_request("d1", json.dumps({"id": "d1", "r": m.release, "f": 0, "o": 2048, "n": 2048}).encode())
    name, payload, qos, retain = pub.sent[-1]
    assert name.endswith("d1/ota/chunk") and qos == 0 and not retain
    assert payload == f"{m.release} 0 2048\n".encode() + b"A" * 2048
    assert store.state("d1").state == "downloading" and counts.chunks == 1
    with pytest.raises(Dropped):  # d2 has not started: nothing to serve it
        svc.on_request("d2", json.dumps({"id": "d2", "r": m.release, "f": 0, "o": 0, "n": 1}).encode())
    with pytest.raises(Dropped):  # a request naming another device on d1's topic
        svc.on_request("d1", json.dumps({"id": "d2", "r": m.release, "f": 0, "o": 0, "n": 1}).encode())


def test_canary_confirmed_starts_the_rest_and_a_failure_stops_them(tmp_path: Path) -> None:
    store = Store("d1", "d2", "d3", "d4")
    svc, pub, counts = _service(tmp_path, store)
    plan = svc.update(None, tmp_path, parallel=2, max_failures=1)
    r = {d["id"]: d["release"] for d in plan["devices"]}
    for st in ("downloading", "verifying", "installed", "confirmed"):
        _status(svc, "d1", st, r["d1"])
    assert store.state("d1").state == "confirmed"
    assert [d for d, _ in pub.manifests()] == ["d1", "d2", "d3"]
    assert (pub.sent[-3][0], pub.sent[-3][1]) == (
        "mlsysops/v1/dev/d1/ota/manifest",
        b"",
    )  # retained one cleared
    _status(svc, "d2", "failed", r["d2"], "hash:app.py")
    assert store.state("d2").label() == "failed(hash:app.py)"
    assert store.state("d4").label() == "failed(stopped)"
    assert [d for d, _ in pub.manifests()] == ["d1", "d2", "d3"]  # d4 never sent anything
    _status(svc, "d3", "rolled_back", r["d3"])
    assert store.state("d3").state == "rolled_back"
    assert sorted(counts.ended) == ["confirmed", "failed", "failed", "rolled_back"]


def test_a_trial_confirmation_gets_the_manifest_again_and_strangers_are_counted(tmp_path: Path) -> None:
    store = Store("d1")
    svc, pub, counts = _service(tmp_path, store)
    r = svc.update(["d1"], tmp_path)["devices"][0]["release"]
    _status(svc, "d1", "confirmed", r - 50)  # it was on trial of an older release, now confirmed
    assert len(pub.manifests()) == 2 and store.state("d1").state == "pending"
    _status(svc, "d1", "failed", r - 60, "replay")  # someone replayed an old manifest to it
    assert counts.refusals == ["replay"] and store.state("d1").state == "pending"


def test_update_refuses_unknown_serial_and_busy_devices_before_sending(tmp_path: Path) -> None:
    store = Store("d1")
    store.devices["s1"] = Device("s1", transport="serial")
    svc, pub, _ = _service(tmp_path, store)
    with pytest.raises(NotFound):
        svc.update(["nope"], tmp_path)
    with pytest.raises(Invalid, match="MQTT transport"):
        svc.update(["s1"], tmp_path)
    with pytest.raises(Invalid, match="not a directory"):
        svc.update(["d1"], tmp_path / "missing")
    assert not pub.sent
    svc.update(["d1"], tmp_path)
    with pytest.raises(Invalid, match="already running on d1"):
        svc.update(["d1"], tmp_path)


def test_no_progress_for_timeout_fails_the_update(tmp_path: Path) -> None:
    store = Store("d1")
    clock = [NOW]
    svc, _, counts = _service(tmp_path, store, clock)
    svc.timeout_s = 30
    svc.update(["d1"], tmp_path)
    clock[0] += 10
    svc.tick()
    assert store.state("d1").state == "pending"
    clock[0] += 30
    svc.tick()
    assert store.state("d1").label() == "failed(timeout)" and counts.ended == ["failed"]


def test_manifest_signature_matches_the_key_the_device_gets(tmp_path: Path) -> None:
    store = Store("d1")
    svc, pub, _ = _service(tmp_path, store)
    svc.update(["d1"], tmp_path)
    payload = pub.manifests()[0][1]
    assert len(payload) > SIG_LEN and svc.device_key("d1") == KeyStore(tmp_path / "k").key("d1")


def test_updates_a_previous_bridge_left_unfinished_end_failed_at_start(tmp_path: Path) -> None:
    store = Store("d1", "d2", "d3")
    store.devices["d1"] = replace(store.devices["d1"], ota=OtaState(5, "1", state="downloading"))
    store.devices["d2"] = replace(store.devices["d2"], ota=OtaState(5, "1", state="confirmed"))
    svc, pub, counts = _service(tmp_path, store)
    svc.start()
    assert store.state("d1").label() == "failed(bridge restarted)" and store.state("d2").state == "confirmed"
    assert pub.sent == [("mlsysops/v1/dev/d1/ota/manifest", b"", 1, True)] and counts.ended == ["failed"]


def test_devices_waiting_behind_the_canary_do_not_time_out(tmp_path: Path) -> None:
    store = Store("d1", "d2")
    clock = [NOW]
    svc, _, _ = _service(tmp_path, store, clock)
    svc.timeout_s = 30
    r = svc.update(None, tmp_path)["devices"][0]["release"]
    clock[0] += 20
    svc.on_request("d1", json.dumps({"id": "d1", "r": r, "f": 0, "o": 0, "n": 2048}).encode())
    clock[0] += 11
    svc.tick()
    assert store.state("d1").state == "downloading"  # progressing
    assert store.state("d2").state == "pending"  # waiting behind it for 31 s: not its fault
