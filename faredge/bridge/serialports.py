"""Serial devices: a scanner thread that (re)opens configured ports, one session thread per port.

Hot-plug: when a port vanishes the session ends and its device is marked offline; the scanner
looks for the port every `scan_interval_s` and opens a fresh session when it returns (the device
then sends its birth again). A device that stays silent for 3 x its sampling interval (at least
`liveness_min_s`) is marked offline too, and online again by its next frame.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from faredge.bridge.router import Router
from faredge.bridge.worker import Worker
from faredge.channels.serial import PortSpec
from faredge.errors import Dropped, NotFound, Unavailable
from faredge.live import liveness_timeout
from faredge.protocol.frames import FrameType
from faredge.protocol.inbound import Inbound
from faredge.protocol.link import SerialLink
from faredge.protocol.messages import peek_id
from faredge.registry import Device

log = logging.getLogger(__name__)


class Port(Protocol):
    path: str

    def read(self) -> bytes: ...
    def write(self, data: bytes) -> None: ...
    def close(self) -> None: ...


class _Session:
    def __init__(self, manager: SerialManager, spec: PortSpec, port: Port) -> None:
        self.spec, self.port, self._m = spec, port, manager
        self.link = SerialLink(manager.clock, identity=spec.id, retry_s=manager.retry_s)
        self._lock = threading.Lock()
        self._silent = False
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None
        self._paused = threading.Event()  # the port is handed over (a deploy, a console)
        self._idle = threading.Event()  # the session thread noticed and reads no more

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name=f"faredge-serial-{self.port.path}", daemon=True)
        self.thread.start()

    def join(self, timeout: float) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def send(self, ftype: FrameType, payload: bytes) -> None:
        if self._paused.is_set():
            return  # not into someone's REPL session: the device asks for its twin at its birth
        with self._lock:  # writes too: two threads' frames must not interleave on the wire
            self.link.send(ftype, payload)
            self.port.write(self.link.take_output())
        self._m.metrics.serial_frames.labels("out").inc()

    def _sync(self) -> None:
        """First frame of the session: the device resets its de-duplication and sends its
        BIRTH and TWIN_GET, so identity and twin are resynchronised (protocol.link)."""
        with self._lock:
            self.link.sync()
            self.port.write(self.link.take_output())
        self._m.metrics.serial_frames.labels("out").inc()

    def _run(self) -> None:
        try:
            self._sync()
            while not self.stop.is_set():
                if self._paused.is_set():
                    self._idle.set()
                    self.stop.wait(0.02)
                    continue
                self._step()
        except Unavailable as exc:
            log.warning("serial port %s gone: %s", self.port.path, exc)
        finally:
            self.port.close()
            if self.link.identity:
                self._m.router.mark_offline(self.link.identity, "port vanished")
            self._m.session_ended(self)

    @contextlib.contextmanager
    def handed_over(self) -> Iterator[Port]:
        """The open port, for someone else's protocol (the raw REPL of a deploy, a console):
        the link pauses (no reads, no liveness verdicts, so the device does not go offline
        while it is flashed), then resumes with a fresh link and a SYNC, so the device's next
        birth (the new firmware's) is taken as it comes."""
        if self._paused.is_set():
            raise Unavailable(f"{self.port.path} is already handed over")
        self._idle.clear()
        self._paused.set()
        if not self._idle.wait(5.0):
            self._paused.clear()
            raise Unavailable(f"{self.port.path}: the serial session did not pause")
        try:
            yield self.port
        finally:
            with self._lock:
                self.link = SerialLink(self._m.clock, identity=self.link.identity, retry_s=self._m.retry_s)
                self._silent = False
            self._paused.clear()
            with contextlib.suppress(Unavailable):
                self._sync()

    def _step(self) -> None:
        data = self.port.read()
        with self._lock:
            before, retrans, gave_up = self.link.frames_in, self.link.retransmits, self.link.gave_up
            previous = self.link.identity
            items = self.link.feed(data) if data else []
            self.link.tick()
            out = self.link.take_output()
            frames, retrans = self.link.frames_in - before, self.link.retransmits - retrans
            gave_up = self.link.gave_up - gave_up
            if out:
                self.port.write(out)
        if frames:
            self._m.metrics.serial_frames.labels("in").inc(frames)
            self._silent = False
        if retrans:
            self._m.metrics.serial_retransmits.inc(retrans)
        if gave_up:
            self._m.metrics.serial_gave_up.inc(gave_up)
        if previous and self.link.identity != previous:  # another board on the same port
            self._m.router.mark_offline(previous, "replaced on port")
        for item in items:
            if isinstance(item, Dropped):
                self._m.router.drop("serial", self.link.identity, item)
            else:
                if self.link.identity is None and item.kind != "birth":
                    self._adopt(item.payload)
                self._m.worker.put(
                    Inbound("serial", self.link.identity, item.kind, item.payload, port=self.port.path)
                )
        self._check_liveness()

    def _adopt(self, payload: bytes) -> None:
        """Recognise a device the registry knows on this very port by its first message.

        After a bridge restart a running device has no reason to send its birth again; without
        this its telemetry would be dropped as unidentified until it reboots.
        """
        device_id = peek_id(payload)
        device = self._m.router.registry.find(device_id) if device_id else None
        if device is not None and device.transport == "serial" and device.port == self.port.path:
            self.link.identity = device.id

    def _check_liveness(self) -> None:
        if self._silent or not self.link.identity:
            return
        if self._m.clock() - self.link.last_rx > self._m.liveness_timeout(self.link.identity):
            self._silent = True
            self._m.router.mark_offline(self.link.identity, "liveness timeout")


class SerialManager:
    def __init__(
        self,
        specs: Sequence[PortSpec],
        router: Router,
        worker: Worker,
        *,
        resolve: Callable[[PortSpec], str | None],
        open_port: Callable[[str, PortSpec], Port],
        clock: Callable[[], float] = time.monotonic,
        scan_interval_s: float = 1.0,
        liveness_min_s: float = 10.0,
        retry_s: float = 0.2,
    ) -> None:
        self.specs = list(specs)
        self.router, self.worker, self.metrics = router, worker, router.metrics
        self._resolve, self._open = resolve, open_port
        self.clock = clock
        self.retry_s = retry_s
        self._scan_interval = scan_interval_s
        self._liveness_min = liveness_min_s
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._scan_loop, name="faredge-serial-scan", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            sessions = list(self._sessions.values())
        for s in sessions:
            s.stop.set()
        for s in sessions:
            s.join(timeout=5)

    def port_states(self) -> list[tuple[str, str]]:
        """(port name, "absent" | "open" | "identified") for every configured port."""
        with self._lock:
            sessions = dict(self._sessions)
        out = []
        for spec in self.specs:
            session = sessions.get(spec.name)
            state = "absent" if session is None else "identified" if session.link.identity else "open"
            out.append((spec.name, state))
        return out

    def liveness_timeout(self, device_id: str) -> float:
        """3 x the device's sampling interval, at least liveness_min_s (protocol doc)."""
        return liveness_timeout(self.router.registry.find(device_id), self._liveness_min)

    def scan(self) -> None:
        """Open every configured port that is present and has no session."""
        for spec in self.specs:
            with self._lock:
                if spec.name in self._sessions:
                    continue
            path = self._resolve(spec)
            if path is None:
                continue
            try:
                port = self._open(path, spec)
            except Unavailable as exc:
                log.warning("serial port %s present but not usable: %s", path, exc)
                continue
            session = _Session(self, spec, port)
            with self._lock:
                self._sessions[spec.name] = session
            log.info("serial port %s opened", path)
            session.start()

    def session_ended(self, session: _Session) -> None:
        with self._lock:
            if self._sessions.get(session.spec.name) is session:
                del self._sessions[session.spec.name]

    def _scan_loop(self) -> None:
        while not self._stop.is_set():
            self.scan()
            self._stop.wait(self._scan_interval)

    @contextlib.contextmanager
    def lease(self, device_id: str) -> Iterator[Port]:
        """The port of a serial device, handed over for as long as the caller holds it."""
        with self._lock:
            session = next((s for s in self._sessions.values() if s.link.identity == device_id), None)
        if session is None:
            raise NotFound(f"{device_id}: no serial session (the bridge does not own its port now)")
        with session.handed_over() as port:
            yield port

    # Downlink -------------------------------------------------------------------
    def send_desired(self, device: Device, payload: bytes) -> None:
        """Reliable TWIN_DESIRED frame to the device's session; absent devices ask on reconnect."""
        with self._lock:
            session = next((s for s in self._sessions.values() if s.link.identity == device.id), None)
        if session is None:
            return
        try:
            session.send(FrameType.TWIN_DESIRED, payload)
        except Unavailable as exc:
            log.warning("cannot send desired state to %s: %s", device.id, exc)
