"""Leader election over a Lease, against the stand-in API with the real kubernetes client: one
holder at a time, a standby takes over only after the holder stopped renewing for a lease
duration (or at once when it released the Lease), a leader that cannot renew stops acting
before anyone may take over, and two candidates racing for a free Lease end with one leader."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from ctlkube_harness import NAMESPACE

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.reconcile.leader import Ended, LeaderElector, LeaseSettings
from mlsysops.testing import wait_for

FAST = {"lease_duration": 1.0, "renew_deadline": 0.6, "retry_period": 0.1}


def elector(kube: KubeApi, identity: str, **kw: Any) -> LeaderElector:
    return LeaderElector(kube, LeaseSettings(identity, namespace=NAMESPACE, **{**FAST, **kw}))


def lease(kube: KubeApi) -> dict[str, Any]:
    spec: dict[str, Any] = kube.get(R.LEASE, NAMESPACE, "mlsysops-controller")["spec"]
    return spec


def test_one_holder_and_a_standby_takes_over_only_after_a_lease_duration(kube: KubeApi) -> None:
    a, b = elector(kube, "a"), elector(kube, "b")
    assert a.try_acquire_or_renew() and not b.try_acquire_or_renew()
    assert lease(kube)["holderIdentity"] == "a" and lease(kube)["leaseTransitions"] == 0
    assert a.try_acquire_or_renew()  # renewing
    seen = time.monotonic()
    assert not b.try_acquire_or_renew()  # b saw a's renewal just now
    # a crashed: no more renewals; b takes over once the record is a lease duration old
    took = wait_for(lambda: b.try_acquire_or_renew() and time.monotonic(), timeout=5,
                    what="b takes the lease", interval=0.05)
    assert took - seen >= FAST["lease_duration"]
    spec = lease(kube)
    assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
    assert spec["acquireTime"] == spec["renewTime"]
    assert not a.try_acquire_or_renew()  # a, back, finds b's fresh record: a standby now


def test_a_leader_that_stops_releases_the_lease_and_the_standby_leads_at_once(kube: KubeApi) -> None:
    a, b = elector(kube, "a"), elector(kube, "b")
    stop_a, stop_b = threading.Event(), threading.Event()
    events: list[str] = []
    ended: dict[str, Ended] = {}

    def run(name: str, e: LeaderElector, stop: threading.Event) -> None:
        ended[name] = e.run(stop, lambda: events.append(f"{name} started"),
                            lambda: events.append(f"{name} stopped"))

    ta = threading.Thread(target=run, args=("a", a, stop_a))
    ta.start()
    wait_for(lambda: "a started" in events, timeout=5, what="a leads")
    tb = threading.Thread(target=run, args=("b", b, stop_b))
    tb.start()
    time.sleep(FAST["lease_duration"] * 1.5)  # a keeps renewing: b stays a standby
    assert events == ["a started"] and not b.leading
    stop_a.set()
    ta.join(5)
    released = time.monotonic()
    wait_for(lambda: "b started" in events, timeout=5, what="b leads")
    assert time.monotonic() - released < FAST["lease_duration"]  # no wait for the lease to expire
    assert events == ["a started", "a stopped", "b started"] and ended["a"] is Ended.STOPPED
    stop_b.set()
    tb.join(5)
    assert lease(kube)["holderIdentity"] == ""


def test_a_leader_that_cannot_renew_stops_before_anyone_may_take_over(kube: KubeApi, standin: Any) -> None:
    a = elector(kube, "a")
    stop = threading.Event()
    events: list[tuple[str, float]] = []
    done: list[Ended] = []
    t = threading.Thread(target=lambda: done.append(
        a.run(stop, lambda: events.append(("started", time.monotonic())),
              lambda: events.append(("stopped", time.monotonic())))))
    t.start()
    wait_for(lambda: events, timeout=5, what="a leads")
    standin.fail(503, count=1000, method="PUT")  # the API server refuses every renewal
    last_renewal = time.monotonic()
    t.join(5)
    standin.recover()
    assert done == [Ended.LOST] and [e for e, _ in events] == ["started", "stopped"]
    stopped_after = events[1][1] - last_renewal
    assert stopped_after < FAST["lease_duration"]  # before a standby could take the Lease


def test_candidates_racing_for_a_free_lease_end_with_one_leader(kube: KubeApi) -> None:
    candidates = [elector(kube, f"c{i}") for i in range(4)]
    barrier = threading.Barrier(len(candidates))
    won: list[str] = []

    def race(e: LeaderElector) -> None:
        barrier.wait()
        if e.try_acquire_or_renew():
            won.append(e.settings.identity)

    threads = [threading.Thread(target=race, args=(e,)) for e in candidates]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(won) == 1 and lease(kube)["holderIdentity"] == won[0]


def test_settings_that_could_let_two_lead_are_refused() -> None:
    with pytest.raises(ValueError, match="renew_deadline < lease_duration"):
        LeaseSettings("a", lease_duration=5, renew_deadline=5, retry_period=1)
