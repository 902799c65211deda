"""Runtime handlers and workloads against a real, private containerd 1.6 with runc and gVisor;
`ctr` (containerd's own client) checks what the agent did."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from privated import PrivateContainerd

from mlsysops.testing import wait_for
from nodeagent.errors import HostError, InvalidSpec, Unsupported
from nodeagent.mechanisms.runtime_switch import Outcome
from nodeagent.service.workloads import WorkloadService

from .conftest import IMAGE, NAMESPACE, make_service

GVISOR_KERNEL = "4.4.0"  # what gVisor reports as its kernel release
BANNER = ["/bin/sh", "-c", "echo kernel=$(uname -r); cat /proc/version; exec sleep 1000"]


def spec(name: str, handler: str = "runc", **extra: object) -> dict[str, object]:
    return {"name": name, "image": IMAGE, "handler": handler, "args": BANNER, **extra}


def ctr_tasks(daemon: PrivateContainerd) -> dict[str, str]:
    """task id -> status, as ctr sees them."""
    lines = daemon.ctr("tasks", "ls", namespace=NAMESPACE).stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[2] for line in lines if line.strip()}


def ctr_containers(daemon: PrivateContainerd) -> dict[str, str]:
    """container id -> runtime, as ctr sees them."""
    lines = daemon.ctr("containers", "ls", namespace=NAMESPACE).stdout.splitlines()[1:]
    return {line.split()[0]: line.split()[-1] for line in lines if line.strip()}


def kernel_lines(service: WorkloadService, name: str) -> list[str]:
    return [line.split("=", 1)[1] for line in service.logs(name).splitlines() if line.startswith("kernel=")]


def wait_kernel_lines(service: WorkloadService, name: str, count: int) -> list[str]:
    return wait_for(
        lambda: (lines := kernel_lines(service, name)) and len(lines) >= count and lines,
        10,
        f"{count} banners from {name}",
    )


def assert_no_debris(daemon: PrivateContainerd, service: WorkloadService, name: str) -> None:
    assert name not in ctr_tasks(daemon)
    assert name not in ctr_containers(daemon)
    assert name not in service.client.snapshot_keys()
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        assert not [m for m in mounts if f"/{name}/" in m]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            assert f"/{NAMESPACE}/{name}".encode() not in cmdline, cmdline  # no shim, gofer or sandbox left


# ---------------------------------------------------------------- discovery


def test_discovery_proves_runc_and_runsc_and_says_why_crun_and_kata_cannot(service: WorkloadService) -> None:
    found = {h.name: h for h in service.discover()}
    assert found["runc"].available and found["runc"].version.startswith("runc version")
    assert found["runsc"].available and "runsc" in found["runsc"].version
    assert not found["kata"].available
    assert found["kata"].reason == "containerd-shim-kata-v2: file does not exist"
    assert not found["crun"].available
    assert "cgroups in hybrid mode not supported" in found["crun"].reason or "crun" in found["crun"].reason
    assert {h.runtime_class_name for h in found.values()} == {"runc", "runsc", "crun", "kata"}
    assert not [
        c for c in service.client.containers() if c.id.startswith("mlsysops-probe-")
    ]  # probes removed


# ---------------------------------------------------------------- run, logs, stop


def test_run_logs_stop_as_ctr_sees_them(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str
) -> None:
    status = service.run(spec(workload_name))
    assert status.status == "running" and status.pid > 0
    assert ctr_tasks(containerd)[workload_name] == "RUNNING"
    assert ctr_containers(containerd)[workload_name] == "io.containerd.runc.v2"
    assert wait_kernel_lines(service, workload_name, 1)[0] != GVISOR_KERNEL
    assert [s.spec.name for s in service.workloads()] == [workload_name]
    service.stop(workload_name)
    assert_no_debris(containerd, service, workload_name)


def test_run_imports_the_image_from_a_tarball(
    containerd: PrivateContainerd, service: WorkloadService, image_tar: Path, workload_name: str
) -> None:
    status = service.run(spec(workload_name, image="mlsysops.test/imported:2"), image_tarball=image_tar)
    assert status.status == "running"
    assert "mlsysops.test/imported:2" in containerd.ctr("images", "ls", "-q", namespace=NAMESPACE).stdout


# ---------------------------------------------------------------- switching


def test_switch_runc_to_gvisor_and_back_proven_by_the_workload_output(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str
) -> None:
    service.run(spec(workload_name))
    assert wait_kernel_lines(service, workload_name, 1)[-1] != GVISOR_KERNEL

    result = service.switch(workload_name, "runsc")
    assert result.outcome is Outcome.SWITCHED, result
    assert wait_kernel_lines(service, workload_name, 2)[-1] == GVISOR_KERNEL
    binary = service.client.container(workload_name)
    assert binary is not None and binary.binary_name.endswith("runsc-wrapper")
    assert ctr_tasks(containerd)[workload_name] == "RUNNING"

    result = service.switch(workload_name, "runc")
    assert result.outcome is Outcome.SWITCHED, result
    assert wait_kernel_lines(service, workload_name, 3)[-1] != GVISOR_KERNEL
    assert service.get(workload_name).spec.handler == "runc"


def test_switch_to_kata_fails_and_rolls_back(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str
) -> None:
    service.run(spec(workload_name))
    wait_kernel_lines(service, workload_name, 1)
    before = service.get(workload_name).pid

    with pytest.raises(Unsupported, match=r"kata is unavailable.*containerd-shim-kata-v2"):
        service.switch(workload_name, "kata")  # discovery said no: nothing touched
    assert service.get(workload_name).pid == before

    result = service.switch(workload_name, "kata", force=True)  # try anyway: fails, rolls back
    assert result.outcome is Outcome.ROLLED_BACK and result.handler == "runc"
    assert "kata" in result.error
    now = service.get(workload_name)
    assert now.status == "running" and now.spec.handler == "runc"
    assert ctr_tasks(containerd)[workload_name] == "RUNNING"
    assert ctr_containers(containerd)[workload_name] == "io.containerd.runc.v2"


def test_containerd_restarted_mid_switch(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str
) -> None:
    service.run(spec(workload_name))
    wait_kernel_lines(service, workload_name, 1)
    results = []
    worker = threading.Thread(target=lambda: results.append(service.switch(workload_name, "runsc")))
    worker.start()
    time.sleep(0.05)
    containerd.restart()
    worker.join(60)
    assert results and results[0].outcome in (Outcome.SWITCHED, Outcome.ROLLED_BACK), results
    now = service.get(workload_name)
    assert now.status == "running" and now.spec.handler == results[0].handler
    assert ctr_tasks(containerd)[workload_name] == "RUNNING"


# ---------------------------------------------------------------- restarts


def test_agent_restart_readopts_running_workloads(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str
) -> None:
    service.run(spec(workload_name, handler="runsc"))
    before = service.get(workload_name)
    fresh = make_service(containerd)  # a new agent process: nothing in memory
    try:
        adopted = {s.spec.name: s for s in fresh.adopt()}
        assert adopted[workload_name].pid == before.pid and adopted[workload_name].status == "running"
        assert adopted[workload_name].spec == before.spec
    finally:
        fresh.client.close()


def test_agent_crash_mid_switch_is_finished_on_restart(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str
) -> None:
    service.run(spec(workload_name))
    containerd.ctr("tasks", "kill", "-s", "SIGKILL", workload_name, namespace=NAMESPACE)
    wait_for(lambda: ctr_tasks(containerd).get(workload_name) == "STOPPED", 10, "task stopped")
    containerd.ctr(
        "tasks", "rm", workload_name, namespace=NAMESPACE
    )  # as if the agent died after its stop step
    fresh = make_service(containerd)
    try:
        adopted = {s.spec.name: s for s in fresh.adopt()}
        assert adopted[workload_name].status == "running"
    finally:
        fresh.client.close()
    assert ctr_tasks(containerd)[workload_name] == "RUNNING"


# ---------------------------------------------------------------- bad input and debris


def test_bad_input_is_refused_and_the_running_workload_is_untouched(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str, tmp_path: Path
) -> None:
    service.run(spec(workload_name))
    before, tasks, containers = service.get(workload_name), ctr_tasks(containerd), ctr_containers(containerd)
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"not a tar at all")
    cases = [
        (lambda: service.switch(workload_name, "nosuch"), InvalidSpec, "handler: unknown runtime handler"),
        (
            lambda: service.switch(workload_name, "crun"),
            Unsupported,
            "handler: runtime handler crun is unavailable",
        ),
        (lambda: service.switch("nosuch", "runsc"), InvalidSpec, "workload: no workload named"),
        (lambda: service.stop("nosuch"), InvalidSpec, "workload: no workload named"),
        (
            lambda: service.run(spec("other", image="missing/image:1")),
            InvalidSpec,
            "image: missing/image:1 is not",
        ),
        (
            lambda: service.run(spec("other"), image_tarball=broken),
            InvalidSpec,
            "image_tarball: .*not a readable",
        ),
        (
            lambda: service.run(spec("other", mounts=[{"source": "/etc", "target": "/x"}])),
            InvalidSpec,
            r"mounts\[0\].source: /etc escapes the allowed mount roots",
        ),
        (
            lambda: service.run(
                spec("other", mounts=[{"source": str(containerd.base / "data/../root"), "target": "/x"}])
            ),
            InvalidSpec,
            "escapes",
        ),
        (lambda: service.run(spec(workload_name)), InvalidSpec, "name: a workload named"),
        (lambda: service.run(spec("other", handler="crun")), Unsupported, "crun is unavailable"),
    ]
    for call, error, message in cases:
        with pytest.raises(error, match=message):
            call()
    assert service.get(workload_name).pid == before.pid
    assert ctr_tasks(containerd) == tasks and ctr_containers(containerd) == containers
    assert "other" not in service.client.snapshot_keys()


@pytest.mark.parametrize("handler", ["runc", "runsc"])
def test_a_failed_start_leaves_no_tasks_shims_mounts_or_snapshots(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str, handler: str
) -> None:
    with pytest.raises(Exception, match="not running"):
        service.run(spec(workload_name, handler=handler, args=["/bin/sh", "-c", "echo bye; exit 3"]))
    assert_no_debris(containerd, service, workload_name)
    with pytest.raises(Exception, match=r"not running|no such file|executable"):
        service.run(spec(workload_name, handler=handler, args=["/no/such/binary"]))
    assert_no_debris(containerd, service, workload_name)


def _cgroup_dirs(pid: int) -> set[str]:
    with open(f"/proc/{pid}/cgroup", encoding="utf-8") as handle:
        return {line.strip().split(":", 2)[2] for line in handle if line.strip()}


def test_the_workloads_cgroup_parent_follows_it_to_the_new_task(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str
) -> None:
    """Limits applied (through a profile) to the parent group stay in force after a switch."""
    parent = f"/{NAMESPACE}/apps/{workload_name}"
    status = service.run(spec(workload_name, cgroup="apps"))
    assert any(d.startswith(parent) for d in _cgroup_dirs(status.pid))
    assert service.switch(workload_name, "runsc").outcome is Outcome.SWITCHED
    after = service.get(workload_name)
    assert after.spec.cgroup == "apps" and after.pid != status.pid
    assert Path(f"/sys/fs/cgroup/memory{parent}").is_dir() or Path(f"/sys/fs/cgroup{parent}").is_dir()


@pytest.mark.parametrize("handler", ["runc", "runsc"])
def test_a_readiness_command_is_waited_for_and_a_failing_one_fails_the_start_cleanly(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str, handler: str
) -> None:
    slow = ["/bin/sh", "-c", "sleep 0.5; echo > /tmp/ready; exec sleep 1000"]
    status = service.run(
        spec(workload_name, handler=handler, args=slow, readiness=["/bin/sh", "-c", "[ -f /tmp/ready ]"])
    )
    assert status.status == "running"
    service.stop(workload_name)
    with pytest.raises(HostError, match="readiness command /bin/false exited with 1"):
        service.run(spec(workload_name, handler=handler, readiness=["/bin/false"], readiness_timeout_s=1))
    assert_no_debris(containerd, service, workload_name)


def test_containerd_is_restarted_only_when_the_handler_set_changes(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str
) -> None:
    from nodeagent.mechanisms.runtime_handlers import HandlerConfig
    from nodeagent.service.events import EventBus

    running = service.run(spec(workload_name))
    events = EventBus()
    watch = events.subscribe([])
    restarts = containerd.restarts
    same = make_service(containerd, restart_containerd=containerd.restart, events=events)
    same.start_up()  # the drop-in is as it should be: no restart
    assert containerd.restarts == restarts
    bigger = make_service(containerd, restart_containerd=containerd.restart, events=events)
    bigger.catalog.wanted = (
        *bigger.catalog.wanted,
        HandlerConfig("runc-debug", "io.containerd.runc.v2", "runc"),
    )
    try:
        bigger.start_up()  # a new handler: containerd restarted, recorded, the workload untouched
        assert containerd.restarts == restarts + 1
        messages = [e.message for e in iter(lambda: watch.get(timeout=0.1), None)]
        assert any("containerd restarted" in m for m in messages), messages
        assert {h.name for h in bigger.handlers()} >= {"runc", "runsc", "runc-debug"}
        assert service.get(workload_name).pid == running.pid
    finally:
        restore = make_service(containerd, restart_containerd=containerd.restart)
        restore.start_up()
        for svc in (same, bigger, restore):
            svc.client.close()
    assert containerd.restarts == restarts + 2 and "runc-debug" not in service.catalog.names()


@pytest.fixture
def shaped_netns(workload_name: str) -> Iterator[str]:
    """A named network namespace with a veth pair, one end shaped by a tbf qdisc (as the network
    mechanism leaves it); deleted afterwards."""
    name = f"rt-{workload_name}"[:15]
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for command in (
            ["link", "set", "lo", "up"],
            ["link", "add", "shaped0", "type", "veth", "peer", "name", "shaped1"],
            ["link", "set", "shaped0", "up"],
        ):
            subprocess.run(["ip", "-n", name, *command], check=True)
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                name,
                "tc",
                "qdisc",
                "add",
                "dev",
                "shaped0",
                "root",
                "tbf",
                "rate",
                "5mbit",
                "burst",
                "32kb",
                "latency",
                "50ms",
            ],
            check=True,
        )
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


def test_a_workload_in_a_shaped_network_namespace_keeps_it_across_switches(
    containerd: PrivateContainerd, service: WorkloadService, workload_name: str, shaped_netns: str
) -> None:
    netns = Path("/run/netns") / shaped_netns
    status = service.run(spec(workload_name, netns=shaped_netns))
    assert os.stat(f"/proc/{status.pid}/ns/net").st_ino == netns.stat().st_ino
    for handler in ("runsc", "runc"):
        assert service.switch(workload_name, handler).outcome is Outcome.SWITCHED
    now = service.get(workload_name)
    assert os.stat(f"/proc/{now.pid}/ns/net").st_ino == netns.stat().st_ino
    qdisc = subprocess.run(
        ["ip", "netns", "exec", shaped_netns, "tc", "qdisc", "show", "dev", "shaped0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "tbf" in qdisc and "5Mbit" in qdisc
