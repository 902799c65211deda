"""The OTA chunk protocol, pure: a board's request for bytes of a file, and the answer.

Request (device -> bridge, `ota/get`, JSON): `{"id", "r": release, "f": file index, "o": offset,
"n": length}`. Answer (bridge -> device, `ota/chunk`, QoS 0): the ASCII line `"<r> <f> <o>\\n"`
then exactly `n` bytes of the file. The board asks for one chunk at a time and asks again when
no answer came (QoS 0 is enough: a lost chunk costs one retry, and nothing queues in the broker
for a board that went away), so its memory holds one chunk whatever the release's size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from faredge.errors import Dropped

MAX_CHUNK = 3072  # what we serve at most per request (the board asks for 2048)


@dataclass(frozen=True)
class ChunkRequest:
    device: str
    release: int
    file: int
    offset: int
    length: int


def _int(obj: dict[str, Any], key: str) -> int:
    v = obj.get(key)
    if type(v) is not int or v < 0:
        raise Dropped("ota_request", f"{key} must be a non-negative integer")
    return v


def parse_request(payload: bytes) -> ChunkRequest:
    try:
        obj = json.loads(payload)
    except ValueError:
        raise Dropped("ota_request", "not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str):
        raise Dropped("ota_request", "not an object with an id")
    req = ChunkRequest(obj["id"], _int(obj, "r"), _int(obj, "f"), _int(obj, "o"), _int(obj, "n"))
    if not 0 < req.length <= MAX_CHUNK:
        raise Dropped("ota_request", f"length {req.length} outside 1..{MAX_CHUNK}")
    return req


def answer(req: ChunkRequest, files: tuple[bytes, ...]) -> bytes:
    """The chunk for `req`; Dropped when it asks for bytes the release does not have."""
    if req.file >= len(files) or req.offset + req.length > len(files[req.file]):
        raise Dropped("ota_request", f"file {req.file} bytes {req.offset}+{req.length} out of range")
    data = files[req.file][req.offset : req.offset + req.length]
    return f"{req.release} {req.file} {req.offset}\n".encode() + data


@dataclass(frozen=True)
class StatusReport:
    device: str
    release: int
    state: str
    reason: str


def parse_status(payload: bytes) -> StatusReport:
    try:
        obj = json.loads(payload)
    except ValueError:
        raise Dropped("ota_status", "not JSON") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("id"), str) or not isinstance(obj.get("st"), str):
        raise Dropped("ota_status", "not an object with id and st")
    why = obj.get("why", "")
    return StatusReport(obj["id"], _int(obj, "r"), obj["st"], why if isinstance(why, str) else "")
