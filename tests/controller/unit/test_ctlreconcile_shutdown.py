"""Controller shutdown waits for its threads within one deadline, not one per thread."""

from __future__ import annotations

import threading

from controller.reconcile.loop import join_all


def test_threads_are_joined_within_one_deadline_and_the_stuck_ones_returned() -> None:
    now = [0.0]
    released = threading.Event()

    class Stuck(threading.Thread):  # an informer blocked in its watch: each join spends its timeout
        def join(self, timeout: float | None = None) -> None:
            now[0] += timeout or 0.0

    stuck = [Stuck(target=released.wait, daemon=True) for _ in range(6)]
    done = threading.Thread(target=lambda: None)
    for t in [*stuck, done]:
        t.start()
    try:
        left = join_all([*stuck, done], timeout=5.0, clock=lambda: now[0])
        assert now[0] == 5.0  # six stuck informers cost 5 s in all, not 30
        assert left == stuck
    finally:
        released.set()
