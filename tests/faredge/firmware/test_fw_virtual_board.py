"""The virtual board end to end: our firmware in the real MicroPython, its UART on a
pseudo-terminal, and a pyserial peer speaking docs/faredge-protocol.md on the other side."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from faredge.virtual import VirtualBoard
from faredge.virtual.host import NodeHost

BIRTH, TELEMETRY, TWIN_GET, TWIN_DESIRED, TWIN_REPORTED, ACK, PING = range(1, 8)


@pytest.fixture
def board(node_host: NodeHost, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[VirtualBoard]:
    cfg: dict[str, Any] = {"id": "vb-1", "interval_ms": 200}
    cfg.update(getattr(request, "param", {}))
    b = VirtualBoard(cfg, tmp_path / "board", host=node_host)
    with b:
        yield b


SerialPeer = Any  # conftest.SerialPeer (conftest modules are not importable by name)


@pytest.fixture
def peer(board: VirtualBoard, make_peer: Callable[..., SerialPeer]) -> SerialPeer:
    return make_peer(board.port)


def test_birth_then_twin_get_with_identity_and_boot_counter(board: VirtualBoard, peer: SerialPeer) -> None:
    birth = peer.wait_type(BIRTH)
    assert birth["id"] == "vb-1" and birth["boot"] == 1 and birth["board"] == "virtual"
    assert birth["sensors"] == ["temp", "light", "vbat"] and birth["fw"]
    assert peer.wait_type(TWIN_GET) == {"id": "vb-1"}
    tel = peer.wait_type(TELEMETRY)
    assert tel["id"] == "vb-1" and tel["boot"] == 1 and set(tel["r"]) == {"temp", "light", "vbat"}
    assert tel["mem_free"] > 0 and tel["freq"] == 160_000_000
    assert os.path.exists(board.port)


def test_twin_desired_is_acked_applied_and_reported(board: VirtualBoard, peer: SerialPeer) -> None:
    peer.wait_type(TWIN_GET)
    seq = peer.desired(
        "vb-1", 3, {"interval_ms": 150, "batch": 2, "sensors": ["temp"], "freq_hz": 240_000_000}
    )
    peer.wait_for(lambda f: f[0] == ACK and f[1] == seq)
    rep = peer.wait_type(TWIN_REPORTED)
    assert rep["version"] == 3 and rep["errors"] == {}
    assert rep["settings"]["batch"] == 2 and rep["settings"]["freq_hz"] == 240_000_000

    def batched(f: tuple[int, int, bytes]) -> bool:
        return f[0] == TELEMETRY and b'"batch"' in f[2]

    tel = json.loads(peer.wait_for(batched)[2])
    assert len(tel["batch"]) == 2 and all(set(r["r"]) == {"temp"} for r in tel["batch"])
    assert all(r["freq"] == 240_000_000 for r in tel["batch"])
    assert board.state()["twin"]["version"] == 3  # persisted in the board's flash


def test_bad_settings_rejected_with_reasons_and_nothing_applied(
    board: VirtualBoard, peer: SerialPeer
) -> None:
    peer.wait_type(TWIN_GET)
    peer.desired("vb-1", 2, {"interval_ms": 5, "batch": 4, "colour": "blue"})
    rep = peer.wait_type(TWIN_REPORTED)
    assert rep["version"] == 2 and set(rep["errors"]) == {"interval_ms", "colour"}
    assert rep["settings"]["batch"] == 1 and rep["settings"]["interval_ms"] == 200


def test_duplicate_and_stale_desired(board: VirtualBoard, peer: SerialPeer) -> None:
    peer.wait_type(TWIN_GET)
    seq = peer.desired("vb-1", 5, {"batch": 3})
    peer.desired("vb-1", 5, {"batch": 3}, seq=seq)  # retransmission: ACKed, handled once
    peer.wait_type(TWIN_REPORTED)
    peer.desired("vb-1", 4, {"batch": 1})  # stale: ignored
    peer.desired("vb-1", 6, {"batch": 2})
    assert peer.wait_for(lambda f: f[0] == ACK and f[1] == seq)
    assert peer.wait_for(lambda f: f[0] == ACK and f[1] == seq)
    assert peer.wait_type(TWIN_REPORTED)["version"] == 6
    assert not [f for f in peer.log if f[0] == TWIN_REPORTED]


def test_noise_partial_frames_and_bad_crc_dropped_then_resynced(
    board: VirtualBoard, peer: SerialPeer
) -> None:
    peer.wait_type(TWIN_GET)
    frames = peer.frames
    good = bytes(frames.encode(TWIN_DESIRED, 500, b'{"id": "vb-1", "version": 9, "settings": {"batch": 2}}'))
    bad = bytearray(
        frames.encode(TWIN_DESIRED, 501, b'{"id": "vb-1", "version": 10, "settings": {"batch": 7}}')
    )
    bad[5] ^= 0x40
    peer.write_raw(b"\xde\xad\xbe\xef garbage \x00")  # noise, then a delimiter
    peer.write_raw(bytes(bad))  # bad CRC
    peer.write_raw(good[:7])  # a partial frame...
    peer.pump()
    peer.write_raw(good[7:])  # ...completed later
    peer.wait_for(lambda f: f[0] == ACK and f[1] == 500)
    rep = peer.wait_type(TWIN_REPORTED)
    assert rep["version"] == 9 and rep["settings"]["batch"] == 2
    assert not [f for f in peer.log if f[0] == ACK and f[1] == 501]


def test_unacked_birth_is_retransmitted_with_same_seq(
    board: VirtualBoard, make_peer: Callable[..., SerialPeer]
) -> None:
    peer = make_peer(board.port, auto_ack=False)
    first = peer.wait_for(lambda f: f[0] == BIRTH)
    again = peer.wait_for(lambda f: f[0] == BIRTH)
    assert again[1] == first[1] and again[2] == first[2]
    peer.send(ACK, seq=first[1])
    get = peer.wait_for(lambda f: f[0] == TWIN_GET)
    peer.send(ACK, seq=get[1])
    peer.pump()
    peer.log.clear()
    peer.wait_type(TELEMETRY)
    peer.wait_type(TELEMETRY)
    assert not [f for f in peer.log if f[0] == BIRTH and f[1] == first[1]]


def test_restart_keeps_flash_and_port_and_counts_boots(board: VirtualBoard, peer: SerialPeer) -> None:
    assert peer.wait_type(BIRTH)["boot"] == 1
    port = board.port
    board.restart()
    assert board.port == port
    assert peer.wait_type(BIRTH)["boot"] == 2
    assert "MPY: soft reboot" in board.console and board.boots == 2


def test_reboot_setting_resets_the_device(board: VirtualBoard, peer: SerialPeer) -> None:
    assert peer.wait_type(BIRTH)["boot"] == 1
    peer.wait_type(TWIN_GET)
    peer.desired("vb-1", 1, {"reboot": 1})
    assert peer.wait_type(TWIN_REPORTED)["settings"]["reboot"] == 1
    birth = peer.wait_type(BIRTH)
    assert birth["boot"] == 2 and board.boots == 2
    peer.wait_type(TWIN_GET)
    peer.desired("vb-1", 1, {"reboot": 1})  # same version after reboot: re-reported, no loop
    assert peer.wait_type(TWIN_REPORTED)["version"] == 1
    assert board.state()["boot"] == 2


def test_ping_fills_silence(board: VirtualBoard, peer: SerialPeer) -> None:
    peer.wait_type(TWIN_GET)
    peer.desired("vb-1", 1, {"batch": 4})
    peer.wait_type(TWIN_REPORTED)
    assert peer.wait_type(PING) == {}


@pytest.mark.parametrize(
    "bad",
    [{"id": "a/b"}, {"interval_ms": 1}, {"board": "esp32"}, {"transport": "mqtt", "mqtt": {"host": "x"}}],
)
def test_bad_config_refused_before_anything_starts(tmp_path: Path, bad: dict[str, Any]) -> None:
    cfg = {"id": "ok"} | bad
    field = next(iter(bad))
    with pytest.raises(ValueError, match=f"^{field}"):
        VirtualBoard(cfg, tmp_path / "b")
    assert not (tmp_path / "b").exists()


def test_compiled_firmware_boots(
    node_host: NodeHost, tmp_path: Path, make_peer: Callable[..., SerialPeer]
) -> None:
    with VirtualBoard({"id": "mpy-1"}, tmp_path, host=node_host, compiled=True) as b:
        assert make_peer(b.port).wait_type(BIRTH)["id"] == "mpy-1"
        assert (b.flash / "app.mpy").is_file() and not (b.flash / "app.py").exists()


def test_restart_before_start_and_files_outside_the_flash_are_errors(
    node_host: NodeHost, tmp_path: Path
) -> None:
    b = VirtualBoard({"id": "x"}, tmp_path / "x", host=node_host)
    with pytest.raises(RuntimeError, match="not started"):
        b.restart()
    with pytest.raises(ValueError, match=r"^files: "):
        VirtualBoard({"id": "x"}, tmp_path / "y", host=node_host, files={"../evil": b""})
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_default_workdir_is_temporary(node_host: NodeHost, make_peer: Callable[..., SerialPeer]) -> None:
    with VirtualBoard({"id": "tmp-1"}, host=node_host) as b:
        workdir = b.workdir
        assert make_peer(b.port).wait_type(BIRTH)["id"] == "tmp-1"
        assert (workdir / "flash" / "state.json").is_file()
    assert not workdir.exists()
