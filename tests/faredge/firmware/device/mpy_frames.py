"""Frame codec (firmware/micropython/frames.py), run inside the real MicroPython."""

import frames


def test_crc_check_value():
    assert frames.crc16(b"123456789") == 0x29B1


def test_cobs_examples_from_the_cobs_paper():
    cases = (
        (b"\x00", b"\x01\x01"),
        (b"\x00\x00", b"\x01\x01\x01"),
        (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
        (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
        (bytes(range(1, 255)), b"\xff" + bytes(range(1, 255))),
        (bytes(range(0, 255)), b"\x01\xff" + bytes(range(1, 255))),
        (bytes(range(1, 256)), b"\xff" + bytes(range(1, 255)) + b"\x02\xff"),
    )
    for raw, enc in cases:
        assert bytes(frames.cobs_encode(raw)) == enc, raw
        assert bytes(frames.cobs_decode(enc)) == raw


def test_round_trip_every_type_and_seq_edges():
    for t in range(1, 9):
        for seq in (0, 1, 255, 256, 65535):
            wire = frames.encode(t, seq, b'{"id": "d\x00x"}')
            assert wire.find(b"\x00") == len(wire) - 1
            assert frames.decode(wire[:-1]) == (t, seq, b'{"id": "d\x00x"}')


def test_efficiency_of_64_byte_telemetry_is_0_90():
    wire = frames.encode(frames.TELEMETRY, 9, b"x" * 64)
    assert len(wire) == 71


def test_bad_crc_type_length_and_cobs_are_rejected():
    wire = bytearray(frames.encode(frames.BIRTH, 1, b"hello"))[:-1]
    bad = bytearray(wire)
    bad[3] ^= 0x01
    assert frames.decode(bad) is None
    assert frames.decode(frames.encode(9, 1, b"")[:-1]) is None  # unknown type
    assert frames.decode(frames.cobs_encode(b"\x01\x00")) is None  # too short
    assert frames.decode(b"\x05\x01") is None  # code runs past the end
    assert frames.decode(frames.encode(2, 1, b"y" * 1025)[:-1]) is None
    assert frames.decode(frames.encode(2, 1, b"y" * 1024)[:-1]) is not None


def test_decoder_splits_joins_and_resyncs_after_noise():
    a = frames.encode(frames.BIRTH, 1, b"a")
    b = frames.encode(frames.TELEMETRY, 2, b"b")
    d = frames.Decoder()
    stream = b"\x13\x37\x00" + a + b
    got = []
    for i in range(len(stream)):  # one byte at a time: partial frames are kept
        got += d.feed(stream[i : i + 1])
    assert got == [(1, 1, b"a"), (2, 2, b"b")]
    assert d.dropped == 1  # the noise before the first delimiter


def test_decoder_counts_bad_crc_and_keeps_following_frame():
    a = bytearray(frames.encode(frames.BIRTH, 1, b"a"))
    a[2] ^= 0xFF
    d = frames.Decoder()
    assert d.feed(bytes(a) + frames.encode(frames.PING, 2)) == [(7, 2, b"")]
    assert d.dropped == 1


def test_decoder_empty_frames_are_not_errors():
    d = frames.Decoder()
    assert d.feed(b"\x00\x00\x00") == []
    assert d.dropped == 0


def test_decoder_drops_oversized_run_once_then_resyncs():
    d = frames.Decoder()
    assert d.feed(b"\x01" * (frames.MAX_WIRE + 10)) == []
    assert d.feed(b"\x01" * 3000) == []
    assert d.dropped == 1
    assert d.feed(b"\x00" + frames.encode(frames.PING, 5)) == [(7, 5, b"")]
    assert len(d.buf) == 0
