"""Leader election over a coordination.k8s.io/v1 Lease, so replicas of the controller can run
as standbys: only the holder of the Lease reconciles.

The algorithm is client-go's (k8s.io/client-go/tools/leaderelection), which every Kubernetes
controller uses, so operators read the same Lease fields they know from kube-scheduler:

- a candidate reads the Lease; it takes it when there is none, when it is its own, or when the
  holder's record (holder, renewTime, leaseTransitions) has not changed for
  `leaseDurationSeconds` *as measured by the candidate's own clock since it first saw that
  record* (no trust in another machine's clock);
- every write is a PUT carrying the resourceVersion read (compare-and-swap): of two candidates
  racing for an expired Lease, the second gets a Conflict and stays a standby;
- the leader renews every `retry_period`; if it could not renew for `renew_deadline` (shorter
  than the lease duration, so it stops before anyone may take over) it has lost the Lease and
  stops acting: the daemon exits and its Deployment starts it again as a standby;
- a leader that stops cleanly releases the Lease (an empty holder, a 1 s duration), so a
  standby takes over at its next attempt instead of after a whole lease duration.
"""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Protocol

from controller.kube import resources
from controller.kube.errors import Conflict, KubeError, NotFound
from controller.kube.objectapi import Obj

log = logging.getLogger(__name__)

DEFAULT_LEASE = "mlsysops-controller"


class LeaseStore(Protocol):
    """What the elector needs from the API server (controller.kube.api.KubeApi)."""

    def get(self, res: resources.Resource, namespace: str, name: str) -> Obj: ...
    def create(self, obj: Mapping[str, Any]) -> Obj: ...
    def replace(self, obj: Obj) -> Obj: ...


@dataclass(frozen=True)
class LeaseSettings:
    identity: str  # this candidate (the pod name and a random suffix)
    name: str = DEFAULT_LEASE
    namespace: str = "default"
    lease_duration: float = 15.0  # client-go's defaults
    renew_deadline: float = 10.0
    retry_period: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError("leader election needs 0 < retry_period < renew_deadline < lease_duration "
                             f"(got {self.retry_period}, {self.renew_deadline}, {self.lease_duration})")


class Ended(Enum):
    STOPPED = "stopped"  # asked to stop (the Lease was released if held)
    LOST = "lost"  # could not renew within renew_deadline: someone else may lead now


def micro_time(when: datetime) -> str:
    """A Kubernetes MicroTime (RFC 3339, microseconds, UTC)."""
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    def __init__(self, store: LeaseStore, settings: LeaseSettings,
                 clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store = store
        self.settings = settings
        self.clock = clock
        self.wall = wall
        self.leading = False
        self._observed: tuple[Any, ...] | None = None  # the holder's record as last read
        self._observed_at = 0.0  # when (our clock) that record was first seen

    # ------------------------------------------------------------------ one attempt

    def try_acquire_or_renew(self) -> bool:
        """One read and at most one write: True when this candidate holds the Lease after it."""
        s = self.settings
        now = self.clock()
        try:
            lease = self.store.get(resources.LEASE, s.namespace, s.name)
        except NotFound:
            return self._create(now)
        except KubeError as exc:
            log.warning("lease %s/%s: cannot read it: %s", s.namespace, s.name, exc)
            return False
        spec = lease.get("spec") or {}
        record = _record(spec)
        if record != self._observed:
            self._observed, self._observed_at = record, now
        holder = record[0]
        duration = float(spec.get("leaseDurationSeconds") or s.lease_duration)
        if holder and holder != s.identity and now < self._observed_at + duration:
            return False  # held, and renewed within the lease duration as we measure it
        stamp = micro_time(self.wall())
        body = copy.deepcopy(lease)
        body["spec"] = {
            **spec,
            "holderIdentity": s.identity,
            "leaseDurationSeconds": int(s.lease_duration),
            "renewTime": stamp,
            "acquireTime": spec.get("acquireTime") if holder == s.identity else stamp,
            "leaseTransitions": int(spec.get("leaseTransitions") or 0) + (holder != s.identity),
        }
        try:
            written = self.store.replace(body)
        except KubeError as exc:  # Conflict: another candidate wrote first
            if not isinstance(exc, Conflict):
                log.warning("lease %s/%s: cannot write it: %s", s.namespace, s.name, exc)
            return False
        self._note(written, now)
        return True

    def _create(self, now: float) -> bool:
        s = self.settings
        stamp = micro_time(self.wall())
        lease = {
            "apiVersion": resources.LEASE.api_version,
            "kind": resources.LEASE.kind,
            "metadata": {"name": s.name, "namespace": s.namespace},
            "spec": {"holderIdentity": s.identity, "leaseDurationSeconds": int(s.lease_duration),
                     "acquireTime": stamp, "renewTime": stamp, "leaseTransitions": 0},
        }
        try:
            self._note(self.store.create(lease), now)
        except KubeError as exc:  # Conflict: created by another candidate first
            if not isinstance(exc, Conflict):
                log.warning("lease %s/%s: cannot create it: %s", s.namespace, s.name, exc)
            return False
        return True

    def _note(self, lease: Obj, now: float) -> None:
        self._observed, self._observed_at = _record(lease.get("spec") or {}), now

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event, on_started: Callable[[], None],
            on_stopped: Callable[[], None]) -> Ended:
        """Until `stop` is set or the Lease is lost: wait to acquire it, then `on_started()`,
        renew it, and `on_stopped()` when leading ends (either way)."""
        s = self.settings
        while not self.try_acquire_or_renew():
            if stop.wait(s.retry_period * (1 + random.random() * 0.2)):  # jittered, as client-go
                return Ended.STOPPED
        self.leading = True
        log.info("lease %s/%s acquired by %s: leading", s.namespace, s.name, s.identity)
        on_started()
        renewed = self.clock()
        ended = Ended.STOPPED
        while not stop.wait(s.retry_period):
            if self.try_acquire_or_renew():
                renewed = self.clock()
            elif self.clock() - renewed >= s.renew_deadline:
                log.error("lease %s/%s not renewed for %.1f s: leadership lost", s.namespace, s.name,
                          self.clock() - renewed)
                ended = Ended.LOST
                break
        self.leading = False
        on_stopped()
        if ended is Ended.STOPPED:
            self.release()
        return ended

    def release(self) -> None:
        """Give the Lease up (an empty holder, a 1 s duration) when we hold it, so a standby
        takes over at once; a failure leaves it to expire."""
        s = self.settings
        try:
            lease = self.store.get(resources.LEASE, s.namespace, s.name)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != s.identity:
                return
            lease["spec"] = {**spec, "holderIdentity": "", "leaseDurationSeconds": 1,
                             "renewTime": micro_time(self.wall())}
            self.store.replace(lease)
            log.info("lease %s/%s released by %s", s.namespace, s.name, s.identity)
        except KubeError as exc:
            log.warning("lease %s/%s: not released (%s): it expires", s.namespace, s.name, exc)


def _record(spec: Mapping[str, Any]) -> tuple[Any, ...]:
    """What changes whenever the holder renews or the Lease changes hands."""
    return spec.get("holderIdentity") or "", spec.get("renewTime"), spec.get("leaseTransitions")
