"""Serial frame codec and stream decoder: the protocol doc's "Serial frames" section as tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from faredge.errors import Dropped
from faredge.protocol import cobs
from faredge.protocol.frames import (
    MAX_PAYLOAD,
    Frame,
    FrameType,
    StreamDecoder,
    crc16,
    decode_frame,
    encode_frame,
)

VECTORS = Path(__file__).parent / "vectors" / "frames.json"

frames = st.builds(
    Frame, st.sampled_from(list(FrameType)), st.integers(0, 0xFFFF), st.binary(max_size=MAX_PAYLOAD)
)


def test_crc_is_ccitt_false() -> None:
    assert crc16(b"123456789") == 0x29B1  # the catalogue check value of CRC-16/CCITT-FALSE


def test_cobs_removes_every_zero_and_round_trips() -> None:
    for data in (b"", b"\x00", b"\x00\x00", b"\x11\x00\x22", bytes(range(1, 255)), bytes(range(256)) * 3):
        encoded = cobs.encode(data)
        assert 0 not in encoded
        assert cobs.decode(encoded) == data


def test_cobs_is_canonical_for_a_final_full_block() -> None:
    assert cobs.encode(b"\x01" * 254) == b"\xff" + b"\x01" * 254


def test_64_byte_telemetry_costs_7_bytes() -> None:
    wire = encode_frame(Frame(FrameType.TELEMETRY, 1, b"x" * 64))
    assert len(wire) == 71 and wire[-1] == 0 and 64 / len(wire) >= 0.9


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda w: w[:3] + bytes([w[3] ^ 0x01]) + w[4:], "crc"),
        (lambda w: b"\x05\x01", "cobs"),
        (lambda w: cobs.encode(b"\x01\x00"), "short"),
    ],
)
def test_bad_frames_are_dropped_with_a_reason(mutate, reason) -> None:  # type: ignore[no-untyped-def]
    wire = encode_frame(Frame(FrameType.BIRTH, 7, b'{"id":"a"}'))[:-1]
    with pytest.raises(Dropped) as info:
        decode_frame(mutate(wire))
    assert info.value.reason == reason


def test_unknown_type_is_dropped() -> None:
    body = b"\x09\x00\x01"
    wire = cobs.encode(body + crc16(body).to_bytes(2, "big"))
    with pytest.raises(Dropped, match="type"):
        decode_frame(wire)


def test_oversized_payload_is_refused_both_ways() -> None:
    with pytest.raises(ValueError, match="payload"):
        encode_frame(Frame(FrameType.TELEMETRY, 0, b"x" * (MAX_PAYLOAD + 1)))
    body = b"\x02\x00\x00" + b"x" * (MAX_PAYLOAD + 1)
    with pytest.raises(Dropped) as info:
        decode_frame(cobs.encode(body + crc16(body).to_bytes(2, "big")))
    assert info.value.reason == "oversize"


def test_stream_decoder_reassembles_partial_frames_byte_by_byte() -> None:
    sent = [Frame(FrameType.TELEMETRY, i, b'{"id":"d","seq":%d}' % i) for i in range(5)]
    stream = b"".join(encode_frame(f) for f in sent)
    decoder = StreamDecoder()
    got = [item for b in stream for item in decoder.feed(bytes([b]))]
    assert got == sent and decoder.pending == 0


def test_stream_decoder_resyncs_after_noise() -> None:
    good = Frame(FrameType.TWIN_GET, 3, b'{"id":"d"}')
    decoder = StreamDecoder()
    out = decoder.feed(b"\x13\x37garbage\xff\x00" + encode_frame(good))
    assert [type(i) for i in out] == [Dropped, Frame] and out[1] == good


def test_stream_decoder_skips_a_run_longer_than_any_frame() -> None:
    decoder = StreamDecoder()
    drops = decoder.feed(b"\x01" * 5000)
    assert [d.reason for d in drops if isinstance(d, Dropped)] == ["oversize"]
    assert decoder.pending == 0  # memory stays bounded
    good = Frame(FrameType.PING, 1)
    assert decoder.feed(b"\x01\x01\x00" + encode_frame(good)) == [
        good
    ]  # rest of the run skipped, then in sync


def test_empty_frames_between_delimiters_are_ignored() -> None:
    good = Frame(FrameType.ACK, 9)
    assert StreamDecoder().feed(b"\x00\x00" + encode_frame(good) + b"\x00") == [good]


@settings(max_examples=300, deadline=None)
@given(frames)
def test_fuzz_codec_round_trips(frame: Frame) -> None:
    wire = encode_frame(frame)
    assert 0 not in wire[:-1]
    assert decode_frame(wire[:-1]) == frame


@settings(max_examples=300, deadline=None)
@given(st.lists(frames, max_size=5), st.binary(max_size=300), st.integers(1, 64))
def test_fuzz_noise_then_delimiter_never_hides_valid_frames(
    sent: list[Frame], noise: bytes, chunk: int
) -> None:
    """Whatever the noise, frames after the next delimiter all arrive, in order, any chunking."""
    stream = noise + b"\x00" + b"".join(encode_frame(f) for f in sent)
    decoder = StreamDecoder()
    out = [item for i in range(0, len(stream), chunk) for item in decoder.feed(stream[i : i + chunk])]
    got = [i for i in out if isinstance(i, Frame)]
    assert got[-len(sent) :] == sent if sent else True
    assert all(isinstance(i, Frame | Dropped) for i in out)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=2000))
def test_fuzz_decoder_never_raises_on_garbage(data: bytes) -> None:
    decoder = StreamDecoder()
    for item in decoder.feed(data):
        assert isinstance(item, Frame | Dropped)
    assert decoder.pending <= 1100


def _vectors() -> dict[str, Any]:
    if not VECTORS.exists():
        pytest.skip("tests/faredge/vectors/frames.json (engineer firmware) does not exist yet")
    return json.loads(VECTORS.read_text())  # type: ignore[no-any-return]


def test_shared_vectors_crc_check_value() -> None:
    crc = _vectors()["crc"]
    assert crc16(bytes.fromhex(crc["input_hex"])) == int(crc["check"], 16)


def test_shared_vectors_encode_and_decode_like_the_firmware() -> None:
    vectors = _vectors()["frames"]
    assert vectors
    for v in vectors:
        frame = Frame(FrameType(v["type"]), v["seq"], bytes.fromhex(v["payload_hex"]))
        wire = bytes.fromhex(v["wire_hex"])
        assert encode_frame(frame) == wire, v["name"]
        assert StreamDecoder().feed(wire) == [frame], v["name"]


# The firmware has one reason "length" for bodies too short or too long; we tell them apart.
REASONS = {"length": {"short", "oversize"}}


def test_shared_invalid_vectors_are_dropped_for_the_same_reason() -> None:
    invalid = _vectors()["invalid"]
    assert invalid
    for v in invalid:
        out = StreamDecoder().feed(bytes.fromhex(v["wire_hex"]))
        reasons = [d.reason for d in out if isinstance(d, Dropped)]
        assert len(reasons) == 1 and reasons[0] in REASONS.get(v["reason"], {v["reason"]}), v["name"]
        assert not [f for f in out if isinstance(f, Frame)], v["name"]
