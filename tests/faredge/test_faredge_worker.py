"""The inbound queue: bounded, never blocking paho, QoS 1 never pushed out, overflow counted."""

from __future__ import annotations

import json
import logging
import socket
from pathlib import Path

from prometheus_client import CollectorRegistry

from faredge.bridge.router import Router
from faredge.bridge.worker import Worker
from faredge.control import ControlClient, ControlServer
from faredge.metrics import BridgeMetrics
from faredge.protocol.inbound import Inbound
from faredge.ratelimit import RateLimitedLog
from faredge.registry import Registry
from faredge.testing import sample


def make(queue_size: int) -> tuple[Worker, Router, BridgeMetrics]:
    metrics = BridgeMetrics(CollectorRegistry())
    router = Router(Registry(None), metrics, RateLimitedLog(logging.getLogger("t")))
    return Worker(router, metrics, queue_size), router, metrics


def telemetry(seq: int, acked: list[int] | None = None) -> Inbound:
    payload = json.dumps({"id": "w", "seq": seq, "r": {}}).encode()
    done = (lambda: acked.append(seq)) if acked is not None else None
    return Inbound("mqtt", "w", "telemetry", payload, done=done)


def test_qos0_overflow_is_refused_and_counted_while_qos1_uses_the_reserve() -> None:
    worker, _, metrics = make(queue_size=100)  # reserve: 10 slots for acknowledged messages
    assert all(worker.offer(telemetry(i)) for i in range(90))
    assert not worker.offer(telemetry(90))
    assert sample(metrics, "faredge_queue_overflow_total", transport="mqtt") == 1
    acked: list[int] = []
    assert all(worker.offer(telemetry(100 + i, acked)) for i in range(10))
    assert not worker.offer(telemetry(200, acked))


def test_everything_queued_is_processed_in_order_and_acknowledged_after_processing() -> None:
    worker, router, _ = make(queue_size=1000)
    router.handle(Inbound("mqtt", "w", "birth", b'{"id":"w","boot":1}'))
    acked: list[int] = []
    for i in range(1, 501):
        assert worker.offer(telemetry(i, acked if i % 2 else None))
    assert acked == []  # nothing acknowledged before it was processed
    worker.start()
    try:
        assert worker.drain()
        assert router.view("w")["live"]["seq"] == 500 and worker.processed == 500
        assert acked == list(range(1, 501, 2))
    finally:
        worker.stop()


def test_control_socket_answers_bad_requests_with_a_named_field(tmp_path: Path) -> None:
    _, router, _ = make(queue_size=10)
    path = Path("/tmp") / f"fe-ctl-{tmp_path.name[-8:]}.sock"
    server = ControlServer(path, router)
    server.start()
    try:
        for raw, field in (
            (b"not json\n", "request"),
            (b'{"op": "reboot", "id": "x"}\n', "op"),
            (b'{"op": "show"}\n', "id"),
        ):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(path))
                s.sendall(raw)
                reply = json.loads(s.makefile().readline())
            assert reply["ok"] is False and reply["error"]["field"] == field, raw
        assert ControlClient(path).call({"op": "list"}) == {"ok": True, "devices": []}
    finally:
        server.stop()
    assert not path.exists()
