"""Workloads the agent runs itself in a containerd namespace of its own: run, stop, list, logs,
and a verified switch to another runtime handler.

containerd is the only store: each workload is one container labelled `mlsysops.eu/workload`,
carrying its WorkloadSpec as an extension, with a writable snapshot named after it that outlives
a switch (the workload keeps its files). A restarted agent therefore re-adopts its workloads by
listing containerd, and a restarted containerd loses nothing (shims keep the tasks running).
Calls that meet a restarting containerd (EAGAIN) are retried until it answers again.

Every failure path cleans up what it created (task, shim, container record, snapshot, stray
rootfs mounts) before it reports; a failed run leaves nothing, a failed switch leaves the
workload on its old handler.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from nodeagent.errors import HostError, InvalidSpec, NodeAgentError, Unsupported
from nodeagent.host import runtimefiles
from nodeagent.mechanisms.runtime_handlers import HandlerConfig
from nodeagent.mechanisms.runtime_switch import SwitchResult, switch
from nodeagent.mechanisms.workload_spec import WorkloadSpec, oci_spec, readiness_process, validate
from nodeagent.service.events import Event, EventBus, EventKind
from nodeagent.service.runtime_handlers import HandlerCatalog, HandlerStatus

if TYPE_CHECKING:  # the adapter (and containerd's stubs) load only when the bootstrap builds one
    from nodeagent.host.containerd import ContainerdClient, ContainerInfo, TaskInfo

log = logging.getLogger(__name__)
T = TypeVar("T")

LABEL = "mlsysops.eu/workload"
PREVIOUS = "mlsysops.eu/previous-handler"
SPEC_EXTENSION = "workload-spec"
PROBE_PREFIX = "mlsysops-probe-"


@dataclass(frozen=True)
class WorkloadSettings:
    namespace: str = "mlsysops"
    log_dir: Path = Path("/run/mlsysops/workloads")
    allowed_mount_roots: tuple[str, ...] = ()
    cgroup_root: str = "mlsysops"
    netns_dir: str = "/run/netns"
    probe_image: str = ""  # the image probe containers run `true` from ("" : the first workload image)
    stop_grace_s: float = 5.0
    verify_window_s: float = 0.1  # a started task must still run after this long
    retry_s: float = 30.0  # how long calls wait for a restarting containerd


@dataclass(frozen=True)
class WorkloadStatus:
    spec: WorkloadSpec
    status: str  # running, stopped, created, absent (no task), ...
    pid: int
    exit_status: int
    runtime: str  # the shim
    previous_handler: str  # set while (or after) a switch that may need undoing


class WorkloadService:
    """The workloads of this node; construct, then call adopt() once containerd answers."""

    def __init__(
        self,
        client: ContainerdClient,
        catalog: HandlerCatalog,
        settings: WorkloadSettings,
        events: EventBus | None = None,
        clock: Callable[[], float] = time.monotonic,
        restart_containerd: Callable[[], None] | None = None,
    ) -> None:
        self._restart_containerd = restart_containerd
        self.client = client
        self.catalog = catalog
        self.settings = settings
        self._events = events
        self._clock = clock
        self._lock = threading.RLock()

    # ------------------------------------------------------------------ handlers

    def start_up(self) -> None:
        """At agent start: write our handler drop-in, then, if containerd answers, re-adopt the
        workloads and discover the handlers. containerd reads the drop-in only when it starts:
        when the drop-in changed, containerd is restarted (with `restart_containerd`; running
        tasks survive, its API is down meanwhile) or the need to restart it is reported, and
        either is recorded as an event. An unreachable containerd is logged, not fatal: the
        inventory then says why no handler is available."""
        try:
            result = self.catalog.ensure_dropin(restart=self._restart_containerd)
            if result.restarted:
                self.client.wait_ready(self.settings.retry_s)
                self._event("containerd restarted to load the runtime handler drop-in (disruptive)", "dropin")
            elif result.changed:
                self._event(
                    "runtime handler drop-in written: restart containerd to load it (disruptive)",
                    "dropin",
                    error=True,
                )
            self.client.version()
        except HostError as exc:
            log.warning("runtimes: %s", exc)
            return
        try:
            self.adopt()
            self.discover()
        except NodeAgentError as exc:
            log.warning("runtimes: start-up incomplete: %s", exc)

    def discover(self) -> list[HandlerStatus]:
        """Prove each configured handler with a probe container (`true`, exit code 0)."""
        with self._lock:
            self._retry(self.client.ensure_namespace)
            return self.catalog.discover(self._probe)

    def handlers(self) -> list[HandlerStatus]:
        return self.catalog.statuses() or self.discover()

    def handler_statuses(self) -> list[HandlerStatus]:
        """What the last discovery found, without probing (inventory reads must stay cheap);
        before any discovery, the configured handlers as unavailable with the reason."""
        found = self.catalog.statuses()
        if found:
            return found
        try:
            configured = self.catalog.configured()
        except HostError as exc:
            return [HandlerStatus("containerd", "", "", False, str(exc), "", "containerd")]
        return [
            HandlerStatus(
                h.name,
                h.runtime_type,
                h.binary_name,
                False,
                "not probed yet (containerd unreachable?)",
                "",
                h.runtime_class_name,
            )
            for h in configured
        ]

    def _probe(self, handler: HandlerConfig) -> None:
        image = self.settings.probe_image or next((s.spec.image for s in self.workloads()), "")
        if not image or self.client.image(image) is None:
            raise Unsupported("no probe image in containerd (runtime.probe_image): cannot prove the handler")
        name = f"{PROBE_PREFIX}{handler.name}".lower().replace("_", "-")[:63]
        spec = WorkloadSpec(name, image, handler.name, ("/bin/true",))
        self._discard(spec, remove_snapshot=True)  # a probe an earlier run left
        try:
            self._start(spec, handler, "", probe=True)
            task = self._wait_stopped(name, 10.0)
            if task is None or task.exit_status != 0:
                raise HostError(
                    f"probe/{handler.name}",
                    f"`true` exited with {task.exit_status if task else '?'}{self._log_tail(name)}",
                )
        finally:
            self._discard(spec, remove_snapshot=True)
            self._log_path(name).unlink(missing_ok=True)

    # ------------------------------------------------------------------ workloads

    def workloads(self) -> list[WorkloadStatus]:
        records = self._retry(lambda: self.client.containers(LABEL))
        return [self._status(c) for c in records if SPEC_EXTENSION in c.extensions]

    def get(self, name: str) -> WorkloadStatus:
        record = self._retry(lambda: self.client.container(name))
        if record is None or SPEC_EXTENSION not in record.extensions:
            raise InvalidSpec("workload", f"no workload named {name!r}")
        return self._status(record)

    def run(self, data: Mapping[str, Any], image_tarball: Path | None = None) -> WorkloadStatus:
        """Validate, import the image if a tarball is given, start, verify; nothing stays on failure."""
        spec = validate(
            data,
            handlers=self.catalog.names(),
            allowed_roots=self.settings.allowed_mount_roots,
            resolve=os.path.realpath,
        )
        with self._lock:
            handler = self._usable(spec.handler, "handler")
            if self._retry(lambda: self.client.container(spec.name)) is not None:
                raise InvalidSpec("name", f"a workload named {spec.name!r} exists (stop it first)")
            if image_tarball is not None:
                from nodeagent.host.ocitar import read_tarball  # tarfile & co. only for image imports

                image = read_tarball(image_tarball)  # InvalidSpec(image_tarball, ...) before any write
                self._retry(self.client.ensure_namespace)
                self._retry(lambda: self.client.import_image(image, spec.image))
            elif self._retry(lambda: self.client.image(spec.image)) is None:
                raise InvalidSpec(
                    "image",
                    f"{spec.image} is not in containerd's content store "
                    "(import it with --image-tarball; no registry is used)",
                )
            self._retry(self.client.ensure_namespace)
            self._log_path(spec.name).unlink(missing_ok=True)
            try:
                self._start(spec, handler, "")
                self._verify(spec)
            except BaseException:
                self._discard(spec, remove_snapshot=True)
                raise
            self._event(f"workload {spec.name} running on {spec.handler}", spec.name)
            return self.get(spec.name)

    def stop(self, name: str) -> WorkloadStatus:
        """Stop the task (SIGTERM, SIGKILL after stop_grace_s) and remove the workload entirely."""
        with self._lock:
            status = self.get(name)
            self._stop_task(name)
            self._discard(status.spec, remove_snapshot=True)
            self._event(f"workload {name} stopped and removed", name)
            return WorkloadStatus(status.spec, "removed", 0, status.exit_status, status.runtime, "")

    def logs(self, name: str, tail_bytes: int = 64 << 10) -> str:
        self.get(name)
        path = self._log_path(name)
        try:
            with path.open("rb") as handle:
                size = handle.seek(0, os.SEEK_END)
                handle.seek(max(0, size - tail_bytes))
                return handle.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def switch(self, name: str, handler: str, *, force: bool = False) -> SwitchResult:
        """Move the workload to `handler`, verified, or back to its old handler with the reason.

        `force` tries a handler discovery reported unavailable (to see why it fails, or after
        installing it); the rollback protects the workload either way."""
        with self._lock:
            current = self.get(name)
            if handler not in self.catalog.names():
                raise InvalidSpec(
                    "handler",
                    f"unknown runtime handler {handler!r} (configured: {', '.join(self.catalog.names())})",
                )
            if not force:
                self._usable(handler, "handler")
            result = switch(_Ops(self), current.spec, handler)
            detail = "; ".join(result.steps)
            if result.ok:
                self._event(f"workload {name}: {result.outcome.value} to {result.handler} ({detail})", name)
            else:
                self._event(
                    f"workload {name}: switch to {handler} {result.outcome.value}: {result.error} ({detail})",
                    name,
                    error=True,
                )
            return result

    def adopt(self) -> list[WorkloadStatus]:
        """After an agent restart: finish what a crash interrupted. A workload whose container
        exists without a task (the agent died mid-switch) is started on its recorded handler, or
        back on the previous one if that fails; running workloads are left alone."""
        with self._lock:
            self._retry(self.client.ensure_namespace)
            for status in self.workloads():
                if status.status != "absent":
                    continue
                log.warning("workload=%s has no task after a restart: starting it", status.spec.name)
                handler = self.catalog.handler(status.spec.handler)
                try:
                    if handler is None:
                        raise Unsupported(f"handler {status.spec.handler} is no longer configured")
                    self._start_existing(status.spec, handler)
                    self._verify(status.spec)
                except NodeAgentError as exc:
                    self._discard(status.spec, remove_snapshot=False)
                    if not status.previous_handler:
                        raise
                    log.warning(
                        "workload=%s failed on %s (%s): back to %s",
                        status.spec.name,
                        status.spec.handler,
                        exc,
                        status.previous_handler,
                    )
                    self._ops_start(status.spec.with_handler(status.previous_handler), "")
            return self.workloads()

    # ------------------------------------------------------------------ steps (also the switch's TaskOps)

    def _usable(self, name: str, field: str) -> HandlerConfig:
        handler = self.catalog.handler(name)
        if handler is None:
            raise InvalidSpec(
                field, f"unknown runtime handler {name!r} (configured: {', '.join(self.catalog.names())})"
            )
        status = self.catalog.status(name)
        if status is not None and not status.available:
            raise Unsupported(f"{field}: runtime handler {name} is unavailable on this node: {status.reason}")
        return handler

    def _ops_start(self, spec: WorkloadSpec, previous: str) -> None:
        handler = self.catalog.handler(spec.handler)
        if handler is None:
            raise InvalidSpec("handler", f"unknown runtime handler {spec.handler!r}")
        self._start(spec, handler, previous)

    def _start(
        self, spec: WorkloadSpec, handler: HandlerConfig, previous: str, *, probe: bool = False
    ) -> None:
        """Container record (spec as an extension), snapshot (kept if it exists), task, start."""
        labels = {LABEL: spec.name} if not probe else {"mlsysops.eu/probe": handler.name}
        if previous:
            labels[PREVIOUS] = previous
        image = self._retry(lambda: self.client.image(spec.image))
        if image is None:
            raise InvalidSpec("image", f"{spec.image} is not in containerd's content store")
        config = oci_spec(spec, cgroup_root=self.settings.cgroup_root, netns_dir=self.settings.netns_dir)
        self._retry(
            lambda: self.client.create_container(
                spec.name,
                image=spec.image,
                spec_json=json.dumps(config).encode(),
                runtime=handler.runtime_type,
                binary_name=handler.binary_name,
                labels=labels,
                extensions={SPEC_EXTENSION: spec.to_json()},
            )
        )
        mounts = self._retry(lambda: self.client.snapshot_mounts(spec.name))
        if mounts is None:
            mounts = self._retry(lambda: self.client.prepare_snapshot(spec.name, image.chain_id))
        self._retry(lambda: self.client.create_task(spec.name, mounts, str(self._log_path(spec.name))))
        self._retry(lambda: self.client.start_task(spec.name))

    def _start_existing(self, spec: WorkloadSpec, handler: HandlerConfig) -> None:
        """A container record without a task (adopt): create its task from the snapshot."""
        mounts = self._retry(lambda: self.client.snapshot_mounts(spec.name))
        if mounts is None:
            raise HostError(f"snapshot/{spec.name}", "the workload's snapshot is gone")
        self._retry(lambda: self.client.create_task(spec.name, mounts, str(self._log_path(spec.name))))
        self._retry(lambda: self.client.start_task(spec.name))

    def _verify(self, spec: WorkloadSpec) -> None:
        """The task runs through the verify window and, when the spec has one, its readiness
        command exits 0 (retried until readiness_timeout_s)."""
        deadline = self._clock() + self.settings.verify_window_s
        while True:
            self._require_running(spec)
            if self._clock() >= deadline:
                break
            time.sleep(0.05)
        if spec.readiness:
            self._await_ready(spec)

    def _require_running(self, spec: WorkloadSpec) -> None:
        task = self._retry(lambda: self.client.task(spec.name))
        if task is None or task.status != "running":
            state = "no task" if task is None else f"{task.status}, exit status {task.exit_status}"
            raise HostError(
                f"workload/{spec.name}", f"not running on {spec.handler} ({state}){self._log_tail(spec.name)}"
            )

    def _await_ready(self, spec: WorkloadSpec) -> None:
        process = json.dumps(readiness_process(spec)).encode()
        log_path = str(self._log_path(f"{spec.name}.readiness"))
        deadline = self._clock() + spec.readiness_timeout_s
        attempt = 0
        while True:
            attempt += 1
            left = max(0.1, deadline - self._clock())
            run = functools.partial(
                self.client.run_exec, spec.name, f"ready-{attempt}", process, log_path, left
            )
            status = self._retry(run)
            if status == 0:
                return
            self._require_running(spec)
            if self._clock() >= deadline:
                outcome = "did not exit in time" if status is None else f"exited with {status}"
                raise HostError(
                    f"workload/{spec.name}",
                    f"readiness command {' '.join(spec.readiness)} {outcome} "
                    f"after {attempt} attempts on {spec.handler}",
                )
            time.sleep(0.2)

    def _stop_task(self, name: str) -> None:
        task = self._retry(lambda: self.client.task(name))
        if task is None:
            return
        if task.status != "stopped":
            self._retry(lambda: self.client.kill(name, signal.SIGTERM))
            if self._wait_stopped(name, self.settings.stop_grace_s) is None:
                self._retry(lambda: self.client.kill(name, signal.SIGKILL))
                if self._wait_stopped(name, 10.0) is None:
                    raise HostError(f"task/{name}", "did not stop after SIGKILL")
        self._retry(lambda: self.client.delete_task(name))

    def _discard(self, spec: WorkloadSpec, *, remove_snapshot: bool) -> None:
        """Remove task (killing it), shim, container record, stray mounts and optionally the snapshot."""
        task = self._retry(lambda: self.client.task(spec.name))
        if task is not None:
            if task.status not in ("stopped", "created"):
                self._retry(lambda: self.client.kill(spec.name, signal.SIGKILL))
                self._wait_stopped(spec.name, 10.0)
            self._retry(lambda: self.client.delete_task(spec.name))
        self._retry(lambda: self.client.delete_container(spec.name))
        bundle = f"io.containerd.runtime.v2.task/{self.settings.namespace}/{spec.name}"
        for pid in runtimefiles.kill_processes_mentioning(bundle + "\0", bundle + "/"):
            log.warning("killed pid %d left behind by a failed start of %s", pid, spec.name)
        for target in runtimefiles.mounts_containing(f"/{self.settings.namespace}/{spec.name}/rootfs"):
            log.warning("unmounting %s left behind by a failed start", target)
            runtimefiles.unmount(target)
        if remove_snapshot:
            self._retry(lambda: self.client.remove_snapshot(spec.name))

    def _wait_stopped(self, name: str, timeout: float) -> TaskInfo | None:
        deadline = self._clock() + timeout
        while True:
            task = self._retry(lambda: self.client.task(name))
            if task is None or task.status == "stopped":
                return task
            if self._clock() >= deadline:
                return None
            time.sleep(0.02)

    # ------------------------------------------------------------------ plumbing

    def _retry(self, call: Callable[[], T]) -> T:
        """Call, waiting out a containerd that is restarting (EAGAIN) for up to retry_s."""
        deadline = self._clock() + self.settings.retry_s
        while True:
            try:
                return call()
            except HostError as exc:
                if exc.errno not in (errno.EAGAIN, errno.ETIMEDOUT) or self._clock() >= deadline:
                    raise
                log.info("containerd unavailable (%s): retrying", exc)
                time.sleep(0.2)

    def _status(self, record: ContainerInfo) -> WorkloadStatus:
        spec = WorkloadSpec.from_json(record.extensions[SPEC_EXTENSION])
        task = self._retry(lambda: self.client.task(record.id))
        return WorkloadStatus(
            spec,
            task.status if task is not None else "absent",
            task.pid if task is not None else 0,
            task.exit_status if task is not None else 0,
            record.runtime,
            record.labels.get(PREVIOUS, ""),
        )

    def _log_path(self, name: str) -> Path:
        return self.settings.log_dir / f"{name}.log"

    def _log_tail(self, name: str, size: int = 400) -> str:
        try:
            data = self._log_path(name).read_bytes()[-size:].decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return f"; output: {data}" if data else ""

    def _event(self, message: str, name: str, *, error: bool = False) -> None:
        log.log(logging.WARNING if error else logging.INFO, "%s", message)
        if self._events is not None:
            kind = EventKind.ERROR if error else EventKind.APPLIED
            self._events.publish(Event(kind, message, mechanism="runtimes", key=f"workload/{name}"))


class _Ops:
    """The switch machine's TaskOps on the service's steps."""

    def __init__(self, service: WorkloadService) -> None:
        self._service = service

    def stop(self, spec: WorkloadSpec) -> None:
        self._service._stop_task(spec.name)
        self._service._retry(lambda: self._service.client.delete_container(spec.name))

    def start(self, spec: WorkloadSpec, previous_handler: str) -> None:
        self._service._ops_start(spec, previous_handler)

    def verify(self, spec: WorkloadSpec) -> None:
        self._service._verify(spec)

    def discard(self, spec: WorkloadSpec) -> None:
        self._service._discard(spec, remove_snapshot=False)
