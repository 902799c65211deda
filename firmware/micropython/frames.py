"""Serial frames of docs/faredge-protocol.md: COBS(type|seq|payload|crc16) + 0x00.

COBS removes every 0x00 from the frame, so 0x00 is an unambiguous delimiter: after line noise
the decoder simply drops bytes up to the next 0x00 and is in sync again. The CRC uses a 16-entry
nibble table: 32 bytes of RAM instead of 512, and still two table look-ups per byte.
"""

BIRTH = 1
TELEMETRY = 2
TWIN_GET = 3
TWIN_DESIRED = 4
TWIN_REPORTED = 5
ACK = 6
PING = 7
SYNC = 8
RELIABLE = (BIRTH, TWIN_GET, TWIN_DESIRED, TWIN_REPORTED, SYNC)
MAX_PAYLOAD = 1024
# Longest legal wire frame: body (3 + 1024 + 2) plus one COBS code byte per 254 bytes, plus one.
MAX_WIRE = 1029 + 1029 // 254 + 1

_T = (
    0x0000,
    0x1021,
    0x2042,
    0x3063,
    0x4084,
    0x50A5,
    0x60C6,
    0x70E7,
    0x8108,
    0x9129,
    0xA14A,
    0xB16B,
    0xC18C,
    0xD1AD,
    0xE1CE,
    0xF1EF,
)


def crc16(data, crc=0xFFFF):
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection): check value 0x29B1."""
    for b in data:
        crc = ((crc << 4) & 0xFFFF) ^ _T[(crc >> 12) ^ (b >> 4)]
        crc = ((crc << 4) & 0xFFFF) ^ _T[(crc >> 12) ^ (b & 15)]
    return crc


def cobs_encode(data):
    """Canonical COBS: a full 254-byte block opens a new block only if more data follows."""
    out = bytearray(1)
    ci = 0
    code = 1
    n = len(data)
    for i in range(n):
        b = data[i]
        if b:
            out.append(b)
            code += 1
        if not b or (code == 0xFF and i + 1 < n):
            out[ci] = code
            ci = len(out)
            out.append(0)
            code = 1
    out[ci] = code
    return out


def cobs_decode(data):
    """Inverse of cobs_encode (no delimiter); None when the encoding is invalid."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        end = i + code
        if not code or end > n:
            return None
        out.extend(data[i + 1 : end])
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return out


def encode(ftype, seq, payload=b""):
    """One wire frame, delimiter included."""
    body = bytearray(3)
    body[0] = ftype
    body[1] = (seq >> 8) & 0xFF
    body[2] = seq & 0xFF
    body.extend(payload)
    c = crc16(body)
    body.append(c >> 8)
    body.append(c & 0xFF)
    out = cobs_encode(body)
    out.append(0)
    return out


def decode(wire):
    """(type, seq, payload) from one frame without its delimiter, or None if it is not valid."""
    body = cobs_decode(wire)
    if body is None or len(body) < 5 or len(body) > MAX_PAYLOAD + 5:
        return None
    if crc16(body) != 0:  # the CRC over body||crc of a CRC without xorout is zero
        return None
    if not BIRTH <= body[0] <= SYNC:
        return None
    return body[0], (body[1] << 8) | body[2], bytes(body[3:-2])


class Decoder:
    """Stream decoder: feed it whatever the UART returned, get whole frames back.

    Bad frames (CRC, COBS, type, length) and oversized runs without delimiter are dropped and
    counted in `dropped`; an empty frame (two delimiters in a row) is a legal resync and not
    counted.
    """

    def __init__(self):
        self.buf = bytearray()
        self.dropped = 0
        self.skip = False

    def feed(self, data):
        frames = []
        self.buf.extend(data)
        buf = self.buf
        start = 0
        while True:
            i = buf.find(b"\x00", start)
            if i < 0:
                break
            if self.skip:
                self.skip = False
            elif i > start:
                f = decode(buf[start:i])
                if f is None:
                    self.dropped += 1
                else:
                    frames.append(f)
            start = i + 1
        if start:
            self.buf = buf = buf[start:]
        if len(buf) > MAX_WIRE:
            if not self.skip:
                self.dropped += 1
            self.skip = True
            self.buf = bytearray()
        return frames
