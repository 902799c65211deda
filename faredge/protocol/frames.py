"""Serial frames: `COBS(type u8 || seq u16be || payload || crc16be) || 0x00`.

`encode_frame`/`decode_frame` are the codec of one frame; `StreamDecoder` turns an arbitrary
byte stream (noise, partial frames, several frames per read) into frames and counted drops. It
never guesses: every chunk between two delimiters is either a frame or a `Dropped` with the
reason that becomes the metric label.
"""

from __future__ import annotations

import binascii
import enum
import struct
from dataclasses import dataclass

from faredge.errors import Dropped
from faredge.protocol import cobs

MAX_PAYLOAD = 1024
HEADER = struct.Struct(">BH")
CRC = struct.Struct(">H")
# Longest legal encoded frame: body + crc, plus one COBS code byte per 254 bytes.
_MAX_BODY = HEADER.size + MAX_PAYLOAD + CRC.size
MAX_ENCODED = _MAX_BODY + _MAX_BODY // 254 + 1


class FrameType(enum.IntEnum):
    BIRTH = 0x01
    TELEMETRY = 0x02
    TWIN_GET = 0x03
    TWIN_DESIRED = 0x04
    TWIN_REPORTED = 0x05
    ACK = 0x06
    PING = 0x07
    SYNC = 0x08  # bridge → device: a new bridge session (epoch) begins; see SerialLink.sync

    @property
    def reliable(self) -> bool:
        """Reliable frames are acknowledged and retransmitted (protocol doc, "Serial frames")."""
        return self in _RELIABLE


_RELIABLE = frozenset(
    {FrameType.BIRTH, FrameType.TWIN_GET, FrameType.TWIN_DESIRED, FrameType.TWIN_REPORTED, FrameType.SYNC}
)
_TYPES = {t.value: t for t in FrameType}


@dataclass(frozen=True, slots=True)
class Frame:
    type: FrameType
    seq: int
    payload: bytes = b""


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF): binascii.crc_hqx is exactly that, in C."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_frame(frame: Frame) -> bytes:
    """The wire bytes of one frame, delimiter included."""
    if not 0 <= frame.seq <= 0xFFFF:
        raise ValueError(f"seq: {frame.seq} is outside 0..65535")
    if len(frame.payload) > MAX_PAYLOAD:
        raise ValueError(f"payload: {len(frame.payload)} bytes is over {MAX_PAYLOAD}")
    body = HEADER.pack(frame.type, frame.seq) + frame.payload
    return cobs.encode(body + CRC.pack(crc16(body))) + b"\x00"


def decode_frame(encoded: bytes) -> Frame:
    """Decode one frame without its delimiter; raises Dropped(reason) for anything invalid."""
    if len(encoded) > MAX_ENCODED:
        raise Dropped("oversize", f"{len(encoded)} encoded bytes")
    raw = cobs.decode(encoded)
    if len(raw) < HEADER.size + CRC.size:
        raise Dropped("short", f"{len(raw)} bytes")
    body, (crc,) = raw[:-2], CRC.unpack_from(raw, len(raw) - 2)
    if crc16(body) != crc:
        raise Dropped("crc")
    kind, seq = HEADER.unpack_from(body)
    ftype = _TYPES.get(kind)
    if ftype is None:
        raise Dropped("type", f"unknown frame type 0x{kind:02x}")
    payload = body[HEADER.size :]
    if len(payload) > MAX_PAYLOAD:
        raise Dropped("oversize", f"{len(payload)} payload bytes")
    return Frame(ftype, seq, payload)


class StreamDecoder:
    """Incremental decoder: feed() any chunk of the byte stream, get frames and drops back.

    A partial frame waits in the buffer for the rest; a run of bytes longer than any legal frame
    is discarded at once (counted as "oversize") and the decoder skips to the next 0x00, so noise
    can neither grow memory nor hide the next valid frame.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False

    def feed(self, data: bytes) -> list[Frame | Dropped]:
        out: list[Frame | Dropped] = []
        parts = data.split(b"\x00")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if self._skipping:
                if not last:
                    self._skipping = False  # the delimiter ending the oversized run: resynced
                continue
            self._buf += part
            if last:
                if len(self._buf) > MAX_ENCODED:
                    out.append(Dropped("oversize", "run without delimiter"))
                    self._buf.clear()
                    self._skipping = True
                break
            if self._buf:
                chunk = bytes(self._buf)
                self._buf.clear()
                try:
                    out.append(decode_frame(chunk))
                except Dropped as drop:
                    out.append(drop)
        return out

    @property
    def pending(self) -> int:
        """Bytes of an incomplete frame waiting for their delimiter."""
        return len(self._buf)
