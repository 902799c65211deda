"""Bridge ↔ a pseudo-terminal peer through real pyserial: frames, ACKs, twin, hot-plug.

The configured port is a symlink (like /dev/serial/by-id/...); unplugging closes the pty and
removes the link, plugging in makes a new pty (another /dev/pts/N) behind the same link.
"""

from __future__ import annotations

import json
import os
import select
import tty
import uuid
from pathlib import Path
from typing import Any

import pytest

from faredge.config import PortSpec, SerialSettings
from faredge.protocol.frames import Frame, FrameType, StreamDecoder, encode_frame
from faredge.testing import sample
from mlsysops.testing import wait_for


class PtyDevice:
    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        link.unlink(missing_ok=True)
        link.symlink_to(os.ttyname(self.slave))
        self.link, self.seq, self.received = link, 0, []  # type: ignore[var-annotated]
        self._decoder = StreamDecoder()

    def send(self, ftype: FrameType, body: dict[str, Any]) -> None:
        os.write(self.master, encode_frame(Frame(ftype, self.seq, json.dumps(body).encode())))
        self.seq += 1

    def send_reliable(self, ftype: FrameType, body: dict[str, Any]) -> None:
        """Like the firmware: the same frame again until it is acknowledged."""
        seq, wire = self.seq, encode_frame(Frame(ftype, self.seq, json.dumps(body).encode()))
        self.seq += 1

        def acked() -> bool:
            os.write(self.master, wire)
            return any(f.type is FrameType.ACK and f.seq == seq for f in self.poll())

        wait_for(acked, what=f"ACK of {ftype.name}")

    def poll(self) -> list[Frame]:
        while select.select([self.master], [], [], 0.01)[0]:
            self.received += [
                f for f in self._decoder.feed(os.read(self.master, 4096)) if isinstance(f, Frame)
            ]
        return self.received

    def unplug(self) -> None:
        self.link.unlink(missing_ok=True)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def port_link(tmp_path: Path) -> Path:
    return tmp_path / f"ttyFE-{uuid.uuid4().hex[:6]}"


def serial_bridge(make_bridge: Any, new_config: Any, link: Path, **kw: Any) -> Any:
    settings = SerialSettings(ports=(PortSpec(path=str(link)),), scan_interval_s=0.05, **kw)
    return make_bridge(new_config(serial=settings))


BIRTH = {"id": "pty1", "fw": "1.0", "board": "virtual", "boot": 1, "sensors": ["temp"], "freq": 1}


def test_pty_device_birth_ack_telemetry_and_twin(make_bridge: Any, new_config: Any, port_link: Path) -> None:
    dev = PtyDevice(port_link)
    try:
        bridge = serial_bridge(make_bridge, new_config, port_link)
        dev.send_reliable(FrameType.BIRTH, BIRTH)
        assert (
            wait_for(lambda: [f for f in dev.poll() if f.type is FrameType.ACK], what="ACK of the birth")[
                0
            ].seq
            == 0
        )
        wait_for(lambda: "pty1" in bridge.registry, what="birth processed")
        os.write(dev.master, b"\x01\x02garbage\x00")  # serial noise, then the delimiter
        dev.send(FrameType.TELEMETRY, {"id": "pty1", "seq": 1, "r": {"temp": 30.5}})
        wait_for(lambda: bridge.router.view("pty1")["live"]["readings"] == {"temp": 30.5}, what="telemetry")
        assert (
            sample(bridge.metrics, "faredge_dropped_total", device="pty1", transport="serial", reason="cobs")
            == 1
        )
        assert bridge.registry.get("pty1").port == str(port_link)
        bridge.router.set_desired("pty1", {"interval_ms": 250})
        desired = wait_for(
            lambda: [f for f in dev.poll() if f.type is FrameType.TWIN_DESIRED], what="desired"
        )
        os.write(dev.master, encode_frame(Frame(FrameType.ACK, desired[0].seq)))
        dev.send(FrameType.TWIN_REPORTED, {"id": "pty1", "version": 1, "settings": {"interval_ms": 250}})
        wait_for(lambda: bridge.router.view("pty1")["in_sync"], what="twin in sync")
    finally:
        dev.unplug()


def test_pty_hot_plug_offline_and_back(make_bridge: Any, new_config: Any, port_link: Path) -> None:
    dev = PtyDevice(port_link)
    bridge = serial_bridge(make_bridge, new_config, port_link)
    dev.send_reliable(FrameType.BIRTH, BIRTH)
    wait_for(lambda: "pty1" in bridge.registry and bridge.registry.get("pty1").online, what="online")
    dev.unplug()
    wait_for(lambda: not bridge.registry.get("pty1").online, what="offline when the port vanished")
    dev = PtyDevice(port_link)
    try:
        dev.send_reliable(FrameType.BIRTH, {**BIRTH, "boot": 2})  # the port is flushed when opened
        wait_for(
            lambda: bridge.registry.get("pty1").online and bridge.registry.get("pty1").boot == 2,
            what="picked up again",
        )
    finally:
        dev.unplug()


def test_unacknowledged_desired_state_is_retransmitted(
    make_bridge: Any, new_config: Any, port_link: Path
) -> None:
    dev = PtyDevice(port_link)
    try:
        bridge = serial_bridge(make_bridge, new_config, port_link, retry_ms=20)
        sync = wait_for(lambda: [f for f in dev.poll() if f.type is FrameType.SYNC], what="session SYNC")
        os.write(dev.master, encode_frame(Frame(FrameType.ACK, sync[0].seq)))  # only the desired unacked
        dev.send_reliable(FrameType.BIRTH, BIRTH)
        wait_for(lambda: "pty1" in bridge.registry, what="birth")  # so the SYNC's ACK was read too
        before = sample(bridge.metrics, "faredge_serial_retransmits_total")  # of the SYNC, if it was slow
        bridge.router.set_desired("pty1", {"batch": 2})
        copies = wait_for(
            lambda: len([f for f in dev.poll() if f.type is FrameType.TWIN_DESIRED]) >= 3,
            what="retransmissions",
        )
        assert copies
        seqs = {f.seq for f in dev.received if f.type is FrameType.TWIN_DESIRED}
        assert len(seqs) == 1  # the same frame again, not new ones
        wait_for(lambda: sample(bridge.metrics, "faredge_serial_gave_up_total") == 1, what="gave up, counted")
        assert sample(bridge.metrics, "faredge_serial_retransmits_total") - before == 4
    finally:
        dev.unplug()


def test_ports_are_found_by_usb_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from faredge.channels import serial as serial_adapter

    ports = [
        SimpleNamespace(device="/dev/ttyACM0", vid=0x2E8A, pid=0x0005, serial_number="AAA"),
        SimpleNamespace(device="/dev/ttyACM1", vid=0x2E8A, pid=0x0005, serial_number="BBB"),
        SimpleNamespace(device="/dev/ttyUSB0", vid=0x10C4, pid=0xEA60, serial_number=None),
    ]
    monkeypatch.setattr(serial_adapter.list_ports, "comports", lambda: ports)
    resolve = serial_adapter.resolve
    assert resolve(PortSpec(vid=0x2E8A, pid=0x0005, serial_number="BBB")) == "/dev/ttyACM1"
    assert resolve(PortSpec(vid=0x10C4)) == "/dev/ttyUSB0"
    assert resolve(PortSpec(serial_number="CCC")) is None  # absent: the scanner tries again later
    assert resolve(PortSpec(path="/nonexistent/tty")) is None
