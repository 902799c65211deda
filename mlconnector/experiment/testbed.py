"""The testbed: a private containerd, a real node agent on the real cgroupfs, and the CPU-bound
service under a runtime handler (runc or runsc), in a network namespace of its own, with its
CPU quota and cpuset set live by the agent on the service's parent cgroup.

    with Testbed(workdir) as bed:
        bed.set_runtime("runsc"); bed.set_quota(0.4); bed.set_cpus(1)
        row = bed.measure(offered_rps=20, seconds=4)   # a dict of contracts.DATASET_COLUMNS

Everything it created (tasks, containerd state, cgroups, netns) is removed on exit.
"""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from pathlib import Path
from types import TracebackType
from typing import Any

from mlconnector.experiment import host, loadgen, service
from mlconnector.experiment.agent import AgentProcess, config_text
from mlconnector.experiment.cgroupfs import CgroupCounters
from mlconnector.experiment.netns import VethNetns
from mlconnector.experiment.stats import Setting, build_row, cpu_window
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb

GROUP = "svc"  # the service's parent cgroup below the agent's root: the agent tunes this one
NAME = "qos-svc"


class Testbed:
    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self, workdir: Path, *, iterations: int = service.ITERATIONS, timeout_s: float = 2.0
    ) -> None:
        self.workdir = workdir
        self.tag = uuid.uuid4().hex[:8]
        self.cgroup_root = f"mlsysops-exp-{self.tag}"
        self.namespace = f"mlsysops-exp-{self.tag}"
        self.image = "mlsysops.exp/busybox:1"
        self.iterations = iterations
        self.timeout_s = timeout_s
        self.netns = VethNetns(self.tag[:6])
        self.counters = CgroupCounters(f"{self.cgroup_root}/{GROUP}")
        self.runtime = "runc"
        self.quota = 1.0
        self.cpus = 2
        self.work_ms = 0.0
        self._daemon: Any = None
        self._agent: AgentProcess | None = None
        self._seed = 0

    # ------------------------------------------------------------------ life cycle

    def __enter__(self) -> Testbed:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        data = self.workdir / "data"
        site = service.write_site(data / "www", self.iterations)
        self.work_ms = service.work_ms(self.iterations)
        self._daemon = host.private_containerd(self.workdir / "ctd")
        self._daemon.start()
        tarball = host.write_image(self.workdir / "busybox.tar", self.image)
        host.import_image(self._daemon, tarball, self.image, self.namespace)
        self._agent = AgentProcess(
            self.workdir,
            config_text(
                cgroup_root=self.cgroup_root,
                daemon=self._daemon,
                namespace=self.namespace,
                image=self.image,
                data=data,
            ),
        )
        self._agent.start()  # writes the runtime handler drop-in; containerd reads it on start
        self._daemon.restart()
        self.netns.create()
        self._agent.set_limits(GROUP, NAME, quota_cores=self.quota, cpus=self.cpus)
        spec = pb.WorkloadSpec(
            name=NAME,
            image=self.image,
            handler=self.runtime,
            args=service.args(),
            mounts=[pb.WorkloadMount(source=str(site), target="/www", readonly=True)],
            cgroup=GROUP,
            netns=self.netns.name,
        )
        found = {r.handler: r for r in self._agent.client.runtimes(refresh=True)}
        for wanted in ("runc", "runsc"):
            if wanted not in found or not found[wanted].available:
                raise RuntimeError(f"runtime {wanted} unavailable: {found.get(wanted)}")
        self._agent.client.run_workload(spec)
        self._wait_serving()

    def close(self) -> None:
        if self._agent is not None:
            with contextlib.suppress(Exception):
                self._agent.client.stop_workload(NAME)
            self._agent.stop()
            self._agent = None
        if self._daemon is not None:
            self._daemon.destroy([self.namespace, "default"])
            self._daemon = None
        host.remove_cgroups(self.cgroup_root)
        self.netns.delete()
        shutil.rmtree(self.workdir / "ctd", ignore_errors=True)

    # ------------------------------------------------------------------ knobs

    @property
    def target(self) -> loadgen.Target:
        return loadgen.Target(self.netns.service_ip, service.PORT)

    def _agent_or_fail(self) -> AgentProcess:
        if self._agent is None:
            raise RuntimeError("the testbed is not running")
        return self._agent

    def set_quota(self, cores: float) -> None:
        """The CFS quota of the service's cgroup, live (the task keeps running)."""
        self._agent_or_fail().set_limits(GROUP, NAME, quota_cores=cores, cpus=self.cpus)
        self.quota = cores

    def set_cpus(self, n: int) -> None:
        """The cpuset of the service's cgroup: CPUs 0..n-1, live."""
        self._agent_or_fail().set_limits(GROUP, NAME, quota_cores=self.quota, cpus=n)
        self.cpus = n

    def set_runtime(self, handler: str) -> None:
        """Move the service to `handler` (runc | runsc) through the agent's verified switch; the
        cgroup parent (and its limits) stays."""
        if handler == self.runtime:
            return
        reply = self._agent_or_fail().client.switch_runtime(NAME, handler)
        if reply.outcome and "rolled" in str(reply.outcome).lower():
            raise RuntimeError(f"switch to {handler} failed: {reply}")
        self.runtime = handler
        self._wait_serving()

    def _wait_serving(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if loadgen.offer(self.target, 20, 0.1, timeout_s=2).latencies_s:
                return
            time.sleep(0.2)
        raise RuntimeError(f"the service did not answer on {self.target} under {self.runtime}")

    # ------------------------------------------------------------------ measuring

    def measure(self, offered_rps: float, seconds: float) -> dict[str, float | int | str]:
        """Offer `offered_rps` for `seconds`: one dataset row (contracts.DATASET_COLUMNS)."""
        self._seed += 1
        start_wall = time.time()
        start = time.perf_counter()
        before = self.counters.read()
        load = loadgen.offer(self.target, offered_rps, seconds, timeout_s=self.timeout_s, seed=self._seed)
        after = self.counters.read()
        elapsed = time.perf_counter() - start
        return build_row(
            window_start=start_wall,
            setting=Setting(self.runtime, self.quota, self.cpus),
            load=load,
            cpu=cpu_window(before, after, elapsed),
            work_ms=self.work_ms,
        )
