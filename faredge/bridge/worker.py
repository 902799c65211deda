"""The bounded inbound queue between the transports' I/O threads and the router.

Size: `queue_size` messages (default 10000; at the 4 KiB message limit at most ~40 MiB, at
typical 100-byte telemetry ~1 MiB). Why it cannot lose reliable messages: MQTT QoS 1 messages
are acknowledged to the broker only after the router processed them (paho manual ack), so the
broker never has more than `max_inflight_messages` (see the generated mosquitto.conf) of them
outstanding. The last `reserve` slots (a tenth of the queue, at most 1000: above the broker's
max_inflight_messages of 100) are kept for those acknowledged messages, so a flood of QoS 0
telemetry can fill the queue but never push out a QoS 1 message; each refused QoS 0 message
is counted in `faredge_queue_overflow_total`. Serial readers wait for room instead (the UART
then buffers, and the device's retransmission covers reliable frames).
"""

from __future__ import annotations

import collections
import logging
import threading
import time

from faredge.bridge.router import Router
from faredge.metrics import BridgeMetrics
from faredge.protocol.inbound import Inbound

log = logging.getLogger(__name__)
DEFAULT_QUEUE_SIZE = 10000
_BATCH = 256  # messages handed to the router per lock acquisition
WAKE_BATCH = 256
NAP_S = 0.005
_AWAKE, _NAPPING, _ASLEEP = 0, 1, 2
_INTERNAL = "internal"  # the transport of the worker's own markers (drain, stop), never routed
_STOP = Inbound(_INTERNAL, None, "stop", b"")


class Worker:
    """A deque and an Event instead of queue.Queue: append/popleft are atomic under the GIL and
    cost a fraction of Queue's lock and condition, which paho's network thread pays per message.

    Wake-ups are batched: after draining the queue the worker naps for `NAP_S` and is woken
    early only when `WAKE_BATCH` messages are waiting; only if the nap ends with nothing queued
    does it sleep until the next message. Under load that turns one thread switch per message
    into one per batch (the GIL is shared with paho's thread); when quiet it costs one short
    nap, and a lone message waits at most NAP_S.
    """

    def __init__(self, router: Router, metrics: BridgeMetrics, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        self._router = router
        self._metrics = metrics
        self._max = queue_size
        self._reserve = min(1000, queue_size // 10)
        self._queue: collections.deque[Inbound] = collections.deque()
        self._wake = threading.Event()
        self._sleep = _AWAKE
        self._thread: threading.Thread | None = None
        self.processed = 0
        self._markers = 0  # stop/drain markers in the queue (rare: the hot path skips filtering)
        self._marker_lock = threading.Lock()

    def offer(self, msg: Inbound) -> bool:
        """Never blocks (paho's on_message): False, counted, when the queue is full.

        Messages that will be acknowledged (msg.done set: QoS 1) may use the reserve.
        """
        queue = self._queue
        if len(queue) >= (self._max if msg.done is not None else self._max - self._reserve):
            self._metrics.queue_overflow.labels(msg.transport).inc()
            return False
        queue.append(msg)
        sleep = self._sleep
        if sleep == _ASLEEP or (sleep == _NAPPING and len(queue) >= WAKE_BATCH):
            self._wake.set()
        return True

    def put(self, msg: Inbound, timeout: float = 1.0) -> bool:
        """Waits up to timeout for room (serial readers: back-pressure instead of loss)."""
        deadline = time.monotonic() + timeout
        while len(self._queue) >= self._max:
            if time.monotonic() > deadline:
                self._metrics.queue_overflow.labels(msg.transport).inc()
                return False
            time.sleep(0.001)  # back-pressure on a full queue only; the UART buffers meanwhile
        return self.offer(msg)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="faredge-worker", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Process what is queued, then stop."""
        if self._thread is not None and self._thread.is_alive():
            self._add_marker(_STOP)
            self._thread.join(timeout=10)

    def _add_marker(self, marker: Inbound) -> None:
        with self._marker_lock:
            self._markers += 1  # counted before it is queued: the worker never takes it for a message
        self._queue.append(marker)
        self._wake.set()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far was processed (tests, shutdown)."""
        done = threading.Event()
        self._add_marker(Inbound(_INTERNAL, None, "drain", b"", done=done.set))
        return done.wait(timeout)

    def _next(self) -> Inbound:
        queue = self._queue
        while True:
            try:
                return queue.popleft()
            except IndexError:
                pass
            self._metrics.queue_depth.set(0)
            self._wake.clear()
            self._sleep = _NAPPING
            if not queue:
                self._wake.wait(NAP_S)
            if not queue:
                self._wake.clear()
                self._sleep = _ASLEEP  # set before the re-check: a racing offer sees it and wakes us
                if not queue:
                    self._wake.wait()
            self._sleep = _AWAKE

    def _run(self) -> None:
        handle_batch, queue = self._router.handle_batch, self._queue
        while True:
            batch = [self._next()]
            while len(batch) < _BATCH:  # take what is there, without waiting for more
                try:
                    batch.append(queue.popleft())
                except IndexError:
                    break
            if not self._markers:  # the usual case: only messages
                handle_batch(batch)
                self.processed += len(batch)
                self._metrics.queue_depth.set(len(queue))
                continue
            messages = [m for m in batch if m.transport != _INTERNAL]
            if messages:
                handle_batch(messages)
                self.processed += len(messages)
            for marker in batch:
                if marker is _STOP:
                    return
                if marker.transport == _INTERNAL:
                    with self._marker_lock:
                        self._markers -= 1
                    if marker.done is not None:
                        marker.done()
