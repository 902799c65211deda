"""Leader election over a Lease, against the stand-in API with the real kubernetes client: one
holder at a time, a standby takes over only after the holder stopped renewing for a lease
duration (or at once when it released the Lease), a leader that cannot renew stops acting
before anyone may take over, and two candidates racing for a free Lease end with one leader."""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from ctlkube_harness import NAMESPACE

from controller.kube import resources as R
from controller.kube.api import KubeApi
from controller.kube.errors import NotFound
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


def _controller(kubeconfig: Path, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "controller", "--kubeconfig", str(kubeconfig), "--namespace", NAMESPACE,
            "--mechanism", "kubernetes", "--leader-elect", "--leader-elect-lease-duration", "2",
            "--leader-elect-renew-deadline", "1.5", "--leader-elect-retry-period", "0.2"]
    with log.open("wb") as out:
        return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)


def test_two_daemons_one_leads_and_the_standby_takes_over_when_it_dies(kube, world, app_doc, standin,
                                                                        tmp_path: Path) -> None:
    """`python -m controller --leader-elect` twice: the Lease's holder deploys apps; killed
    (no release), the standby leads once the Lease expired and deploys the next one."""
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(f"""apiVersion: v1
kind: Config
clusters: [{{name: standin, cluster: {{server: "{standin.host}"}}}}]
users: [{{name: tester, user: {{token: not-checked}}}}]
contexts: [{{name: standin, context: {{cluster: standin, user: tester, namespace: {NAMESPACE}}}}}]
current-context: standin
""")
    procs = {name: _controller(kubeconfig, tmp_path / f"{name}.log") for name in ("a", "b")}
    try:
        holder = wait_for(lambda: _holder(kube), timeout=30, what="a leader")
        leader = wait_for(lambda: _logged(tmp_path, procs, holder), timeout=10, what="the leader's log line")
        kube.apply(app_doc, field_manager="test-user")
        wait_for(lambda: _phase(kube, app_doc["metadata"]["name"]) == "Deployed", timeout=60, what="deployed")
        procs[leader].kill()  # no release: the standby waits for the Lease to expire
        procs[leader].wait(10)
        killed = time.monotonic()
        new = wait_for(lambda: (h := _holder(kube)) != holder and h, timeout=30, what="the standby leads")
        assert time.monotonic() - killed >= 1.0  # it waited for the Lease, not a moment
        standby = next(n for n in procs if n != leader)
        assert wait_for(lambda: _logged(tmp_path, procs, new), timeout=10, what="its log line") == standby
        second = copy.deepcopy(app_doc)
        second["metadata"]["name"] = "second"
        kube.apply(second, field_manager="test-user")
        wait_for(lambda: _phase(kube, "second") == "Deployed", timeout=60, what="deployed by the standby")
        procs[standby].send_signal(signal.SIGTERM)
        assert procs[standby].wait(30) == 0
        assert lease(kube)["holderIdentity"] == ""  # released on a clean stop
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait(10)


def _logged(logs: Path, procs: dict[str, Any], holder: str) -> str | None:
    """Which daemon logged that it acquired the Lease as `holder`."""
    return next((n for n in procs if f"acquired by {holder}" in (logs / f"{n}.log").read_text()), None)


def _holder(kube: KubeApi) -> str:
    try:
        return str(lease(kube).get("holderIdentity") or "")
    except NotFound:
        return ""


def _phase(kube: KubeApi, app: str) -> str | None:
    phase: str | None = (kube.get(R.APP, NAMESPACE, app).get("status") or {}).get("phase")
    return phase
