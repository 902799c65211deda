"""Property tests (hypothesis) of the firmware's pure modules, run under CPython on the same
source the device runs: the frame codec, the twin and the config rules never crash on any
input, and valid data always survives."""

from __future__ import annotations

import json
from collections.abc import Callable
from types import ModuleType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

Fw = Callable[[str], ModuleType]

frame = st.tuples(st.integers(1, 7), st.integers(0, 0xFFFF), st.binary(max_size=1024))
json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=2000))
def test_cobs_round_trip_and_no_zero_inside(fw: Fw, data: bytes) -> None:
    enc = bytes(fw("frames").cobs_encode(data))
    assert 0 not in enc
    assert len(enc) <= len(data) + len(data) // 254 + 1
    assert bytes(fw("frames").cobs_decode(enc)) == data


@settings(max_examples=300, deadline=None)
@given(f=frame)
def test_frame_round_trip(fw: Fw, f: tuple[int, int, bytes]) -> None:
    frames = fw("frames")
    wire = bytes(frames.encode(*f))
    assert wire.index(0) == len(wire) - 1
    assert frames.decode(wire[:-1]) == f


@settings(max_examples=300, deadline=None)
@given(sent=st.lists(frame, max_size=5), noise=st.binary(max_size=300), chunk=st.integers(1, 97))
def test_decoder_resyncs_after_any_noise_in_any_chunking(
    fw: Fw, sent: list[tuple[int, int, bytes]], noise: bytes, chunk: int
) -> None:
    frames = fw("frames")
    stream = noise + b"\x00" + b"".join(bytes(frames.encode(*f)) for f in sent)
    dec = frames.Decoder()
    got = []
    for i in range(0, len(stream), chunk):
        got += dec.feed(stream[i : i + chunk])
    assert got[len(got) - len(sent) :] == sent  # noise may decode as a frame only by CRC luck
    assert len(dec.buf) == 0


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=3000))
def test_decoder_never_raises_and_stays_bounded(fw: Fw, data: bytes) -> None:
    frames = fw("frames")
    dec = frames.Decoder()
    for i in range(0, len(data), 64):
        for t, seq, payload in dec.feed(data[i : i + 64]):
            assert 1 <= t <= 7 and 0 <= seq <= 0xFFFF and len(payload) <= 1024
        assert len(dec.buf) <= frames.MAX_WIRE


class FakeHal:
    NAME = "fake"
    SENSORS = ("temp", "adc")

    def __init__(self) -> None:
        self.hz = 160_000_000

    def freq(self, hz: int | None = None) -> int:
        if hz is not None:
            self.hz = hz
        return self.hz

    def freq_ok(self, hz: int) -> bool:
        return hz in (80_000_000, 160_000_000, 240_000_000)


@settings(max_examples=400, deadline=None)
@given(
    version=json_value | st.integers(-5, 5),
    desired=st.dictionaries(
        st.sampled_from(["interval_ms", "freq_hz", "sensors", "batch", "reboot", "x"]), json_value
    )
    | json_value,
)
def test_twin_never_raises_and_rejects_atomically(fw: Fw, version: Any, desired: Any) -> None:
    settings0 = {"interval_ms": 1000, "batch": 1, "sensors": ["temp"], "reboot": 0, "freq_hz": 160_000_000}
    twin = fw("twin").Twin(FakeHal(), dict(settings0), 0)
    report, _ = twin.desired({"id": "d", "version": version, "settings": desired})
    if report is None:
        assert twin.settings == settings0
        return
    json.dumps(report)  # always serialisable
    assert report["version"] == version
    if set(report["errors"]) & set(fw("twin").KNOBS):
        assert twin.settings == settings0  # a bad known key changes nothing


@settings(max_examples=400, deadline=None)
@given(
    cfg=st.dictionaries(
        st.sampled_from(["id", "board", "transport", "mqtt", "serial", "batch", "interval_ms", "sensors"]),
        json_value,
    )
    | json_value
)
def test_config_check_raises_only_config_errors(fw: Fw, cfg: Any) -> None:
    config = fw("config")
    try:
        out = config.check(cfg)
    except config.ConfigError as e:
        assert str(e).startswith(e.field + ": ")
    else:
        assert out["id"] == cfg["id"] and out["transport"] in ("serial", "mqtt")
