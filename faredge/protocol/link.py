"""The serial link state machine: frames ↔ messages, ACKs, retransmission, de-duplication.

Pure and clock-driven (the clock is injected): the port session feeds it bytes and writes out what
it produces, tests drive it with a fake clock. Rules from docs/faredge-protocol.md: reliable frames
are acknowledged (duplicates again) and processed once; our reliable frames are retransmitted
after 200 ms, doubling, up to 5 tries.

Sessions: each side de-duplicates on (type, seq) and numbers its frames from 0 when it starts, so
a new session on either side would look like a run of duplicates to the other. The bridge opens
every session with a SYNC frame carrying a random epoch: the device forgets what it has seen,
and answers with BIRTH and TWIN_GET, which resynchronises the twin. A new (not duplicate) BIRTH
does the same here: the device rebooted and counts from 0 again.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from faredge.errors import Dropped
from faredge.protocol.frames import MAX_PAYLOAD, Frame, FrameType, StreamDecoder, encode_frame
from faredge.protocol.messages import parse_message

KIND_OF = {
    FrameType.BIRTH: "birth",
    FrameType.TELEMETRY: "telemetry",
    FrameType.TWIN_GET: "twin/get",
    FrameType.TWIN_REPORTED: "twin/reported",
}
DEDUP_WINDOW = 64


@dataclass(frozen=True, slots=True)
class Received:
    kind: str
    payload: bytes


@dataclass(slots=True)
class _Pending:
    wire: bytes
    due: float
    delay: float
    tries: int


class SerialLink:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        identity: str | None = None,
        retry_s: float = 0.2,
        max_tries: int = 5,
        epoch: int | None = None,
    ) -> None:
        self._clock = clock
        self.epoch = random.getrandbits(31) if epoch is None else epoch
        self.identity = identity  # configured, or learned from the first birth
        self._configured = identity is not None
        self._retry = retry_s
        self._max_tries = max_tries
        self._decoder = StreamDecoder()
        self._out = bytearray()
        self._seq = 0
        self._pending: dict[int, _Pending] = {}
        self._seen: deque[tuple[int, int, bytes]] = deque(maxlen=DEDUP_WINDOW)
        self.last_rx = clock()
        self.last_tx = clock()
        self.frames_in = 0
        self.frames_out = 0
        self.retransmits = 0
        self.gave_up = 0

    # ------------------------------------------------------------------ receive
    def feed(self, data: bytes) -> list[Received | Dropped]:
        """Decode bytes; return new messages and drops; queue ACKs for output."""
        out: list[Received | Dropped] = []
        for item in self._decoder.feed(data):
            if isinstance(item, Dropped):
                out.append(item)
                continue
            self.frames_in += 1
            self.last_rx = self._clock()
            result = self._on_frame(item)
            if result is not None:
                out.append(result)
        return out

    def _on_frame(self, frame: Frame) -> Received | Dropped | None:
        if frame.type is FrameType.ACK:
            self._pending.pop(frame.seq, None)
            return None
        if frame.type is FrameType.PING:
            return None
        kind = KIND_OF.get(frame.type)
        if kind is None:
            return Dropped("direction", f"{frame.type.name} is sent by the bridge, not the device")
        if frame.type.reliable:
            self._emit(Frame(FrameType.ACK, frame.seq))
            key = (frame.type, frame.seq, frame.payload)
            if key in self._seen:
                return None  # a retransmission of something already processed
            if frame.type is FrameType.BIRTH:
                self._seen.clear()  # the device (re)started: its numbering starts again
            self._seen.append(key)
        if frame.type is FrameType.BIRTH:
            self._learn_identity(frame.payload)
        return Received(kind, frame.payload)

    def _learn_identity(self, payload: bytes) -> None:
        """Only a birth that passes validation names the link: a malformed one (noise that
        happens to decode, a buggy or hostile board) must not take the port from its device."""
        if self._configured:
            return  # the router checks the birth's id against the configured one
        try:
            birth = parse_message("birth", payload, max_bytes=MAX_PAYLOAD)
        except Dropped:
            return  # the router drops and counts it
        self.identity = birth.id

    # ------------------------------------------------------------------ send
    def sync(self) -> int:
        """Open this bridge session: the device resets its de-duplication and re-announces."""
        return self.send(FrameType.SYNC, b'{"epoch":%d}' % self.epoch)

    def send(self, ftype: FrameType, payload: bytes = b"") -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFFFF
        wire = self._emit(Frame(ftype, seq, payload))
        if ftype.reliable:
            self._pending[seq] = _Pending(wire, self._clock() + self._retry, self._retry, 1)
        return seq

    def _emit(self, frame: Frame) -> bytes:
        wire = encode_frame(frame)
        self._out += wire
        self.frames_out += 1
        self.last_tx = self._clock()
        return wire

    def tick(self) -> None:
        """Retransmit what is due; give up (counted) after max_tries."""
        now = self._clock()
        for seq, p in list(self._pending.items()):
            if now < p.due:
                continue
            if p.tries >= self._max_tries:
                del self._pending[seq]
                self.gave_up += 1
                continue
            self._out += p.wire
            self.retransmits += 1
            p.tries += 1
            p.delay *= 2
            p.due = now + p.delay

    def take_output(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    @property
    def unacknowledged(self) -> int:
        return len(self._pending)
