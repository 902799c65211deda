"""Shared frame test vectors (tests/faredge/vectors/frames.json), computed by the firmware codec
inside the real MicroPython. The bridge's decoder checks the same file, so both ends agree on
every byte. Regenerate after a deliberate protocol change with MLSYSOPS_REGEN_VECTORS=1.
"""

from __future__ import annotations

import binascii
import json
import os
from pathlib import Path

from faredge.virtual.firmware import stage
from faredge.virtual.host import NodeHost, run_script

VECTORS = Path(__file__).resolve().parents[1] / "vectors" / "frames.json"

# (name, type, seq, payload)
VALID: list[tuple[str, int, int, bytes]] = [
    ("ack-empty", 6, 0, b""),
    ("ping-seq-wrap", 7, 65535, b""),
    (
        "birth",
        1,
        1,
        b'{"id": "dev-1", "fw": "1.0.0", "board": "esp32", "boot": 3, '
        b'"sensors": ["temp"], "freq": 240000000}',
    ),
    ("twin-get", 3, 2, b'{"id": "dev-1"}'),
    ("twin-desired", 4, 513, b'{"id": "dev-1", "version": 7, "settings": {"interval_ms": 1000}}'),
    ("twin-reported", 5, 3, b'{"id": "dev-1", "version": 7, "settings": {}, "errors": {}}'),
    ("telemetry-64", 2, 4, b'{"id":"d","seq":1,"up":5,"boot":1,"mem_free":900,"r":{"t":21.5}}'),
    ("zeros-in-payload", 2, 0x0100, b"\x00a\x00\x00b\x00"),
    ("run-of-254-nonzero", 2, 5, bytes(range(1, 255))),
    ("max-payload-1024", 2, 6, bytes((i % 255) + 1 for i in range(1024))),
    ("sync", 8, 0, b'{"epoch":1234}'),
]
# Encoded by the same codec but illegal for a receiver: (name, type, seq, payload).
ILLEGAL: list[tuple[str, int, int, bytes]] = [
    ("unknown-type-9", 9, 1, b""),
    ("payload-1025", 2, 7, b"y" * 1025),
]

SCRIPT = """
import json, frames, _vboard
cases = json.loads(%r)
out = []
for name, t, seq, hexp in cases:
    out.append(frames.encode(t, seq, bytes.fromhex(hexp)).hex())
print("@@" + json.dumps(out))
print("@@" + json.dumps(hex(frames.crc16(b"123456789"))))
_vboard.exit(0)
"""


def _firmware_encode(node_host: NodeHost, flash: Path) -> tuple[list[str], str]:
    stage(flash)
    cases = json.dumps([[n, t, s, p.hex()] for n, t, s, p in VALID + ILLEGAL])
    res = run_script(flash, SCRIPT % cases, host=node_host)
    lines = [json.loads(x[2:]) for x in res.output.splitlines() if x.startswith("@@")]
    assert len(lines) == 2, res.output
    return lines[0], lines[1]


def _invalid(wires: dict[str, str]) -> list[dict[str, str]]:
    """Frames a receiver must drop and count (each wire ends with its 0x00 delimiter)."""
    birth = bytes.fromhex(wires["birth"])[:-1]
    bad_crc = bytearray(birth)
    bad_crc[-2] ^= 0x01
    return [
        {"name": "bad-crc", "wire_hex": bytes(bad_crc).hex() + "00", "reason": "crc"},
        {"name": "truncated", "wire_hex": birth[:20].hex() + "00", "reason": "cobs"},
        {"name": "unknown-type-9", "wire_hex": wires["unknown-type-9"], "reason": "type"},
        {"name": "payload-1025", "wire_hex": wires["payload-1025"], "reason": "length"},
        {"name": "too-short", "wire_hex": "03010100", "reason": "length"},
    ]


def test_vectors_match_the_firmware_codec(node_host: NodeHost, tmp_path: Path) -> None:
    wires, check = _firmware_encode(node_host, tmp_path)
    assert check == "0x29b1"  # CRC-16/CCITT-FALSE check value
    frames = [
        {"name": n, "type": t, "seq": s, "payload_hex": p.hex(), "wire_hex": w}
        for (n, t, s, p), w in zip(VALID, wires, strict=False)
    ]
    by_name = {c[0]: w for c, w in zip(VALID + ILLEGAL, wires, strict=True)}
    doc = {
        "doc": "docs/faredge-protocol.md serial frames; computed by firmware/micropython/frames.py",
        "crc": {"algorithm": "CRC-16/CCITT-FALSE", "input_hex": b"123456789".hex(), "check": "29b1"},
        "frames": frames,
        "invalid": _invalid(by_name),
    }
    if os.environ.get("MLSYSOPS_REGEN_VECTORS") == "1":
        VECTORS.write_text(json.dumps(doc, indent=1) + "\n")
    assert VECTORS.is_file(), "run once with MLSYSOPS_REGEN_VECTORS=1"
    assert json.loads(VECTORS.read_text()) == doc


def _unstuff(data: bytes) -> bytes:
    """A deliberately naive COBS decoder, written independently of the firmware's."""
    out, i = b"", 0
    while i < len(data):
        code = data[i]
        out += data[i + 1 : i + code]
        i += code
        if code < 0xFF and i < len(data):
            out += b"\0"
    return out


def test_vectors_agree_with_an_independent_host_decoder() -> None:
    """binascii.crc_hqx is CRC-16/CCITT with a caller-given init: with 0xFFFF it is -FALSE."""
    doc = json.loads(VECTORS.read_text())
    assert binascii.crc_hqx(b"123456789", 0xFFFF) == 0x29B1
    for f in doc["frames"]:
        wire = bytes.fromhex(f["wire_hex"])
        assert wire[-1] == 0 and 0 not in wire[:-1], f["name"]
        body = _unstuff(wire[:-1])
        assert body[0] == f["type"] and int.from_bytes(body[1:3], "big") == f["seq"]
        assert body[3:-2].hex() == f["payload_hex"]
        assert int.from_bytes(body[-2:], "big") == binascii.crc_hqx(body[:-2], 0xFFFF), f["name"]
    tel = next(f for f in doc["frames"] if f["name"] == "telemetry-64")
    assert len(bytes.fromhex(tel["payload_hex"])) == 64 and len(bytes.fromhex(tel["wire_hex"])) == 71


DECODE_SCRIPT = """
import json, frames, _vboard
doc = json.loads(open("vectors.json").read())
bad = []
for v in doc["frames"]:
    d = frames.Decoder()
    if d.feed(bytes.fromhex(v["wire_hex"])) != [(v["type"], v["seq"], bytes.fromhex(v["payload_hex"]))]:
        bad.append(v["name"])
for v in doc["invalid"]:
    d = frames.Decoder()
    if d.feed(bytes.fromhex(v["wire_hex"])) != [] or d.dropped != 1:
        bad.append(v["name"])
print("@@" + json.dumps(bad))
_vboard.exit(0)
"""


def test_firmware_decoder_accepts_valid_and_drops_invalid_vectors(
    node_host: NodeHost, tmp_path: Path
) -> None:
    stage(tmp_path)
    (tmp_path / "vectors.json").write_text(VECTORS.read_text())
    res = run_script(tmp_path, DECODE_SCRIPT, host=node_host)
    lines = [json.loads(x[2:]) for x in res.output.splitlines() if x.startswith("@@")]
    assert lines == [[]], res.output
