"""The far-edge demo (part of `make demo`) runs start to finish and cleans up after itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from faredge import demo


def test_demo_shows_telemetry_and_a_twin_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    virtual = pytest.importorskip(
        "faredge.virtual", reason="faredge/virtual (engineer firmware) not in the tree"
    )
    try:
        virtual.host.find_host()
    except virtual.HostUnavailable as exc:
        pytest.skip(f"no MicroPython WebAssembly host: {exc}")
    with demo.bridge(tmp_path / "demo", None) as info:
        demo.tour(info)
        socket = Path(info["socket"])
        assert socket.exists()
    out = capsys.readouterr().out
    assert "demo-serial-1" in out and "demo-mqtt-1" in out
    assert "the device applied the change" in out
    assert 'v1 {"interval_ms": 500' in out  # reported version caught up with the desired one
    assert "faredge_device_reading" in out
    assert not socket.exists()  # the bridge daemon stopped and removed its socket
