"""Serial path: the link state machine (fake clock), then the port manager over in-memory pipes."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from faredge.bridge.router import Router
from faredge.bridge.serialports import SerialManager
from faredge.bridge.worker import Worker
from faredge.channels.memory import MemoryPort, memory_pair
from faredge.config import PortSpec
from faredge.errors import Dropped
from faredge.metrics import BridgeMetrics
from faredge.protocol.frames import Frame, FrameType, StreamDecoder, encode_frame
from faredge.protocol.link import Received, SerialLink
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Registry
from faredge.testing import sample
from mlsysops.testing import wait_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def birth(device_id: str = "s1", boot: int = 1) -> bytes:
    return json.dumps(
        {"id": device_id, "fw": "1", "board": "virtual", "boot": boot, "sensors": ["t"]}
    ).encode()


def frames_in(data: bytes) -> list[Frame]:
    return [f for f in StreamDecoder().feed(data) if isinstance(f, Frame)]


# ------------------------------------------------------------------ link
def test_reliable_frames_are_acknowledged_and_processed_once() -> None:
    link = SerialLink(Clock())
    wire = encode_frame(Frame(FrameType.BIRTH, 41, birth()))
    assert link.feed(wire) == [Received("birth", birth())]
    assert link.feed(wire) == []  # a retransmission: acknowledged again, not processed again
    assert frames_in(link.take_output()) == [Frame(FrameType.ACK, 41), Frame(FrameType.ACK, 41)]
    assert link.identity == "s1"


def test_telemetry_and_ping_are_not_acknowledged() -> None:
    link = SerialLink(Clock())
    out = link.feed(
        encode_frame(Frame(FrameType.TELEMETRY, 1, b"{}")) + encode_frame(Frame(FrameType.PING, 2))
    )
    assert out == [Received("telemetry", b"{}")] and link.take_output() == b""


def test_desired_state_is_retransmitted_with_backoff_until_acknowledged() -> None:
    clock = Clock()
    link = SerialLink(clock, retry_s=0.2)
    seq = link.send(FrameType.TWIN_DESIRED, b'{"id":"s1"}')
    first = link.take_output()
    clock.now += 0.19
    link.tick()
    assert link.take_output() == b""
    clock.now += 0.02
    link.tick()
    assert link.take_output() == first  # after 200 ms
    clock.now += 0.3
    link.tick()
    assert link.take_output() == b""  # next one after 400 ms
    clock.now += 0.2
    link.tick()
    assert link.take_output() == first
    link.feed(encode_frame(Frame(FrameType.ACK, seq)))
    clock.now += 10
    link.tick()
    assert link.take_output() == b"" and link.unacknowledged == 0 and link.retransmits == 2


def test_sender_gives_up_after_five_tries() -> None:
    clock = Clock()
    link = SerialLink(clock)
    link.send(FrameType.TWIN_DESIRED, b"{}")
    sent = len(frames_in(link.take_output()))
    for _ in range(20):
        clock.now += 10
        link.tick()
        sent += len(frames_in(link.take_output()))
    assert sent == 5 and link.gave_up == 1


def test_frames_the_device_must_not_send_are_dropped() -> None:
    link = SerialLink(Clock())
    out = link.feed(encode_frame(Frame(FrameType.TWIN_DESIRED, 1, b"{}")))
    assert [d.reason for d in out if isinstance(d, Dropped)] == ["direction"]


def test_configured_identity_is_not_replaced_by_a_birth() -> None:
    link = SerialLink(Clock(), identity="expected")
    link.feed(encode_frame(Frame(FrameType.BIRTH, 1, birth("intruder"))))
    assert link.identity == "expected"


def test_a_reboot_with_the_same_seq_is_not_mistaken_for_a_duplicate() -> None:
    link = SerialLink(Clock())
    assert link.feed(encode_frame(Frame(FrameType.BIRTH, 0, birth(boot=1))))
    assert link.feed(encode_frame(Frame(FrameType.BIRTH, 0, birth(boot=2))))


# ------------------------------------------------------------------ manager over memory ports
class Ports:
    """Plug and unplug in-memory ports by name (stands in for /dev and list_ports)."""

    def __init__(self) -> None:
        self.device_ends: dict[str, MemoryPort] = {}
        self._bridge_ends: dict[str, MemoryPort] = {}
        self.lock = threading.Lock()

    def plug(self, path: str) -> MemoryPort:
        bridge_end, device_end = memory_pair(path)
        with self.lock:
            self._bridge_ends[path], self.device_ends[path] = bridge_end, device_end
        return device_end

    def unplug(self, path: str) -> None:
        with self.lock:
            self._bridge_ends.pop(path).close()

    def resolve(self, spec: PortSpec) -> str | None:
        with self.lock:
            return spec.path if spec.path in self._bridge_ends else None

    def open(self, path: str, spec: PortSpec) -> MemoryPort:
        with self.lock:
            return self._bridge_ends[path]


class Device:
    """The device end: sends frames, collects what the bridge sends back."""

    def __init__(self, port: MemoryPort) -> None:
        self.port, self.seq, self.received = port, 0, []  # type: ignore[var-annotated]
        self._decoder = StreamDecoder()

    def send(self, ftype: FrameType, body: dict[str, Any] | bytes) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.port.write(encode_frame(Frame(ftype, self.seq, payload)))
        self.seq += 1

    def poll(self) -> list[Frame]:
        self.received += [f for f in self._decoder.feed(self.port.read(0.01)) if isinstance(f, Frame)]
        return self.received


class Rig:
    """Bridges (router + worker + serial manager) over the in-memory ports; all stopped at teardown."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path, self.ports = tmp_path, Ports()
        self._running: list[tuple[SerialManager, Worker]] = []

    def start(self, **kw: Any) -> Router:
        metrics = BridgeMetrics(CollectorRegistry())
        router = Router(Registry(self.tmp_path / "r.json"), metrics, RateLimitedLog(logging.getLogger("t")))
        worker = Worker(router, metrics)
        manager = SerialManager(
            [PortSpec(path="mem0")],
            router,
            worker,
            resolve=self.ports.resolve,
            open_port=self.ports.open,
            scan_interval_s=0.02,
            **kw,
        )
        router.downlinks["serial"] = manager
        worker.start()
        manager.start()
        self._running.append((manager, worker))
        return router

    def stop(self) -> None:
        while self._running:
            manager, worker = self._running.pop()
            manager.stop()
            worker.stop()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    rig = Rig(tmp_path)
    try:
        yield rig
    finally:
        rig.stop()


def test_serial_device_birth_telemetry_and_twin(rig: Rig) -> None:
    dev = Device(rig.ports.plug("mem0"))
    router = rig.start()
    dev.send(FrameType.BIRTH, json.loads(birth()))
    wait_for(lambda: "s1" in router.registry, what="birth processed")
    assert any(f.type is FrameType.ACK for f in wait_for(dev.poll, what="ack"))
    dev.send(FrameType.TELEMETRY, {"id": "s1", "seq": 1, "r": {"t": 4.5}})
    dev.port.write(b"\x17noise\x00")  # noise between frames is dropped and counted
    dev.send(FrameType.TELEMETRY, {"id": "s1", "seq": 2, "r": {"t": 5.5}})
    wait_for(lambda: router.view("s1")["live"]["seq"] == 2, what="telemetry")
    assert (
        sample(router.metrics, "faredge_dropped_total", device="s1", transport="serial", reason="cobs") == 1
    )
    router.set_desired("s1", {"interval_ms": 1000})
    desired = wait_for(lambda: [f for f in dev.poll() if f.type is FrameType.TWIN_DESIRED], what="desired")
    assert json.loads(desired[0].payload) == {"id": "s1", "version": 1, "settings": {"interval_ms": 1000}}
    dev.port.write(encode_frame(Frame(FrameType.ACK, desired[0].seq)))
    dev.send(FrameType.TWIN_REPORTED, {"id": "s1", "version": 1, "settings": {"interval_ms": 1000}})
    wait_for(lambda: router.view("s1")["in_sync"], what="twin in sync")


def test_hot_plug_marks_offline_and_picks_the_device_up_again(rig: Rig) -> None:
    dev = Device(rig.ports.plug("mem0"))
    router = rig.start()
    dev.send(FrameType.BIRTH, json.loads(birth(boot=1)))
    wait_for(lambda: "s1" in router.registry and router.registry.get("s1").online, what="online")
    rig.ports.unplug("mem0")
    wait_for(lambda: not router.registry.get("s1").online, what="offline after unplug")
    dev = Device(rig.ports.plug("mem0"))
    dev.send(FrameType.BIRTH, json.loads(birth(boot=2)))
    wait_for(
        lambda: router.registry.get("s1").online and router.registry.get("s1").boot == 2, what="online again"
    )


def test_silent_device_goes_offline_after_the_liveness_timeout(rig: Rig) -> None:
    dev = Device(rig.ports.plug("mem0"))
    router = rig.start(liveness_min_s=0.2)
    dev.send(FrameType.BIRTH, json.loads(birth()))
    wait_for(lambda: "s1" in router.registry and router.registry.get("s1").online, what="online")
    wait_for(lambda: not router.registry.get("s1").online, what="offline by liveness")
    dev.send(FrameType.PING, b"")
    dev.send(FrameType.TELEMETRY, {"id": "s1", "seq": 1, "r": {}})
    wait_for(lambda: router.registry.get("s1").online, what="online by telemetry")


def test_known_device_is_recognised_without_a_new_birth_after_a_bridge_restart(rig: Rig) -> None:
    dev = Device(rig.ports.plug("mem0"))
    router = rig.start()
    dev.send(FrameType.BIRTH, json.loads(birth()))
    wait_for(lambda: "s1" in router.registry, what="birth")
    rig.stop()
    rig.ports.unplug("mem0")
    dev = Device(rig.ports.plug("mem0"))
    router = rig.start()  # same registry file: knows s1 on mem0
    dev.send(FrameType.TELEMETRY, {"id": "s1", "seq": 8, "r": {"t": 1.0}})
    wait_for(lambda: router.view("s1")["live"]["seq"] == 8, what="telemetry accepted without a birth")
    dev.send(FrameType.TELEMETRY, {"id": "stranger", "seq": 1, "r": {}})

    def refused() -> bool:
        return (
            sample(
                router.metrics, "faredge_dropped_total", device="s1", transport="serial", reason="identity"
            )
            == 1
        )

    wait_for(refused, what="a different id on the same link is refused")


def test_a_deeply_nested_birth_does_not_break_the_link() -> None:
    link = SerialLink(Clock())
    nested = b'{"id":' + b"[" * 500 + b"]" * 500 + b"}"  # hostile: deep nesting, no id
    assert link.feed(encode_frame(Frame(FrameType.BIRTH, 1, nested))) == [Received("birth", nested)]
    assert link.identity is None  # the router then drops it as unidentified/schema


# ------------------------------------------------------------------ sessions and identity (issue 9)
def test_a_malformed_birth_does_not_rekey_an_unconfigured_link() -> None:
    link = SerialLink(Clock())
    link.feed(encode_frame(Frame(FrameType.BIRTH, 0, birth("s1"))))
    bad = json.dumps({"id": "evil", "fw": 1}).encode()  # decodes, has an id, fails the schema
    assert link.feed(encode_frame(Frame(FrameType.BIRTH, 1, bad))) == [Received("birth", bad)]
    assert link.identity == "s1"


def test_a_new_birth_resets_deduplication_so_a_rebooted_device_is_heard() -> None:
    link = SerialLink(Clock())
    get = encode_frame(Frame(FrameType.TWIN_GET, 1, b'{"id":"s1"}'))
    link.feed(encode_frame(Frame(FrameType.BIRTH, 0, birth(boot=1))) + get)
    assert link.feed(encode_frame(Frame(FrameType.BIRTH, 0, birth(boot=2))) + get) == [
        Received("birth", birth(boot=2)),
        Received("twin/get", b'{"id":"s1"}'),
    ]


def test_every_session_opens_with_a_reliable_sync_carrying_its_epoch() -> None:
    link = SerialLink(Clock(), epoch=1234)
    link.sync()
    (frame,) = frames_in(link.take_output())
    assert (frame.type, frame.seq, json.loads(frame.payload)) == (FrameType.SYNC, 0, {"epoch": 1234})
    assert link.unacknowledged == 1 and FrameType.SYNC.reliable


def test_a_malformed_birth_on_an_id_less_port_keeps_the_device_online(rig: Rig) -> None:
    dev = Device(rig.ports.plug("mem0"))
    router = rig.start()
    assert any(f.type is FrameType.SYNC for f in wait_for(dev.poll, what="the session's SYNC"))
    dev.send(FrameType.BIRTH, json.loads(birth()))
    wait_for(lambda: "s1" in router.registry, what="birth")
    dev.send(FrameType.BIRTH, {"id": "evil", "fw": 1})  # schema-invalid
    dev.send(FrameType.TELEMETRY, {"id": "s1", "seq": 5, "r": {"t": 1.0}})
    wait_for(lambda: router.view("s1")["live"]["seq"] == 5, what="the real device's telemetry")
    assert router.registry.get("s1").online and "evil" not in router.registry
    assert (
        sample(router.metrics, "faredge_dropped_total", device="s1", transport="serial", reason="identity")
        == 0
    )
    router.set_desired("s1", {"interval_ms": 1000})
    wait_for(lambda: [f for f in dev.poll() if f.type is FrameType.TWIN_DESIRED], what="desired still sent")
