"""The reconcile loop's pure parts: the work queue, status conditions, the daemon's flags."""

from __future__ import annotations

import argparse
import threading

import pytest

from controller.daemon import main, parse_agent
from controller.reconcile.nodesync import AgentTarget
from controller.reconcile.queue import Backoff, WorkQueue
from controller.reconcile.status import Condition, conditions


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_key_queued_many_times_is_handled_once():
    queue = WorkQueue()
    for _ in range(3):
        queue.add("a")
    queue.add("b")
    assert [queue.get(0), queue.get(0), queue.get(0)] == ["a", "b", None]


def test_a_key_changed_while_processing_comes_back_after_done_not_before():
    queue = WorkQueue()
    queue.add("a")
    assert queue.get(0) == "a"
    queue.add("a")  # changed while a worker holds it
    assert queue.get(0) is None  # never to a second worker at the same time
    queue.done("a")
    assert queue.get(0) == "a"


def test_failures_back_off_exponentially_up_to_the_cap_and_forget_resets():
    clock = Clock()
    queue = WorkQueue(Backoff(base=0.1, cap=0.5), clock=clock)
    assert [queue.retry("a") for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    queue.forget("a")
    assert queue.retry("a") == 0.1


def test_a_delayed_key_is_ready_only_when_its_time_comes():
    clock = Clock()
    queue = WorkQueue(clock=clock)
    queue.add_after("a", 5.0)
    assert queue.get(0) is None
    clock.now = 5.0
    assert queue.get(0) == "a"


def test_close_wakes_a_waiting_worker():
    queue = WorkQueue()
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(queue.get()))
    worker.start()
    queue.close()
    worker.join(5)
    assert got == [None] and not worker.is_alive()


def test_a_condition_keeps_its_transition_time_until_its_status_changes():
    first = conditions([Condition("Ready", True, "Ready")], [], 1, "2026-01-01T00:00:00Z")
    same = conditions([Condition("Ready", True, "Ready", "again")], first, 2, "2026-01-02T00:00:00Z")
    flipped = conditions([Condition("Ready", False, "Retrying")], same, 2, "2026-01-03T00:00:00Z")
    assert same[0]["lastTransitionTime"] == "2026-01-01T00:00:00Z" and same[0]["observedGeneration"] == 2
    assert flipped[0]["lastTransitionTime"] == "2026-01-03T00:00:00Z" and flipped[0]["status"] == "False"


def test_agent_flags_name_target_and_layer():
    assert parse_agent("unix:/run/a.sock") == AgentTarget("unix:/run/a.sock")
    assert parse_agent("10.0.0.7:50051=far_edge") == AgentTarget("10.0.0.7:50051", "far_edge")
    with pytest.raises(argparse.ArgumentTypeError, match="layer 'moon'"):
        parse_agent("unix:/a.sock=moon")


def test_the_daemon_refuses_an_unloadable_kubeconfig(tmp_path, capsys):
    missing = tmp_path / "nope.yaml"
    assert main(["--kubeconfig", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err
