"""Node agent benchmark: footprint, idle cost and apply latency of a real agent process.

Starts `python -m nodeagent` on a temporary unix socket, over the real cgroup v1 hierarchies
(a private subtree, removed afterwards), a simulated cpufreq tree where the machine has none,
and a network namespace with a veth pair of its own (deleted afterwards; the agent's netns
directory holds only that one, so other programs' namespaces do not change the figures). Measures:

- rss_mib_idle / rss_mib_after_10k_applies: VmRSS of the agent before and after the applies;
- idle_cpu_pct: the agent's CPU time over an idle period, default telemetry on;
- apply_p50_ms / apply_p99_ms: one cgroup knob alternating between two values, gRPC end to end;
- direct_write_p99_ms: the same kind of write done directly through HostFS (the baseline);
- profile_p99_ms: every CPU's governor + 20 cgroup files + 5 tc objects, alternating;
- reapply_writes: writes made by a repeated identical apply (must be 0);
- baseline.grpc_server_rss_mib: the same interpreter serving the agent's gRPC services with empty
  handlers, no agent code (what grpc, protobuf and CPython alone take of the RSS budget);
- rss_mib_above_grpc_floor: idle RSS (before any network apply) minus that floor, same run;
  rss_mib_above_grpc_floor_shaping: the same after the profile with tc objects was applied;
- rss_mib_after_hostile: RSS after a corpus of hostile requests (huge fields and lists, deep
  structs, garbage bytes, oversized device reports), all refused;
- max_lock_hold_ms_hostile: the longest a one-knob dry run (which takes the engine lock) waited
  while that corpus ran, minus its median when idle;
- watchdog_gap_ms_hostile: the longest gap between two WATCHDOG=1 notifications the agent sent
  during the corpus (WATCHDOG_USEC=200000: one every 100 ms while the engine answers).

The last line printed is one JSON object with the figures, the targets and the baseline.
Run as root: `python bench/nodeagent.py [--applies 10000] [--idle-seconds 20]`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc

# Run as a script, this file's folder comes first on sys.path and this very file would shadow
# the `nodeagent` package: drop the folder before importing the package.
HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]

from mlsysops.nodeapi import NodeAgentClient, NodeApiError  # noqa: E402
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb  # noqa: E402
from nodeagent.host.fs import HostFS  # noqa: E402

REPO = HERE.parent
CGROUP_MOUNT = Path("/sys/fs/cgroup")
V1_HIERARCHIES = ("cpu", "cpuacct", "cpuset", "memory")
# Memory is judged against the floor measured in the same run (a bare gRPC server with health
# and reflection, 41.7 MiB here), not as an absolute figure: the former absolute 40 MiB target
# was below that floor, so no agent could meet it.
TARGETS = {
    "rss_mib_above_grpc_floor_max": 10.0,
    "rss_mib_after_hostile_above_idle_max": 10.0,
    "max_lock_hold_ms_hostile_max": 250.0,
    "watchdog_gap_ms_hostile_max": 250.0,
    "idle_cpu_pct_max": 0.3,
    "apply_p99_ms_max": 2.0,
    "profile_p99_ms_max": 30.0,
    "reapply_writes": 0,
}
CLK_TCK = os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of the process (fields 14 and 15 of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ----------------------------------------------------------------------------- environment


@contextmanager
def private_cgroups(name: str) -> Iterator[str]:
    """A cgroup root of our own in each v1 hierarchy; removed (deepest first) afterwards."""
    made: list[Path] = []
    try:
        for hierarchy in V1_HIERARCHIES:
            base = CGROUP_MOUNT / hierarchy
            if not base.is_dir():
                continue
            root = base / name
            root.mkdir()
            made.append(root)
            if hierarchy == "cpuset":  # a new cpuset is empty: give it the parent's CPUs and nodes
                for attr in ("cpuset.cpus", "cpuset.mems"):
                    (root / attr).write_text((base / attr).read_text())
        yield name
    finally:
        for root in made:
            for dirpath, _dirs, _files in os.walk(root, topdown=False):
                try:
                    os.rmdir(dirpath)
                except OSError as exc:
                    print(f"bench: could not remove cgroup {dirpath}: {exc}", file=sys.stderr)


@contextmanager
def private_netns(name: str, netns_dir: Path) -> Iterator[str | None]:
    """A named network namespace with veth0/veth1 up inside, also bound into `netns_dir` (the
    agent's, which holds nothing else: namespaces other programs keep in /run/netns would make
    the agent list their interfaces, through netlink); None when this host cannot."""
    if shutil.which("ip") is None:
        yield None
        return
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, check=False).returncode == 0
    bound = netns_dir / name
    try:
        if not made:
            yield None
            return
        for cmd in (
            ["ip", "-n", name, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1"],
            ["ip", "-n", name, "link", "set", "veth0", "up"],
            ["ip", "-n", name, "link", "set", "veth1", "up"],
        ):
            subprocess.run(cmd, capture_output=True, check=True)
        bound.touch()
        subprocess.run(["mount", "--bind", f"/run/netns/{name}", str(bound)], capture_output=True, check=True)
        yield name
    finally:
        if bound.exists():
            subprocess.run(["umount", str(bound)], capture_output=True, check=False)
            bound.unlink(missing_ok=True)
        if made:
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)


@contextmanager
def running_agent(
    workdir: Path, cgroup_root: str, node_name: str = "bench"
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """The agent on a socket in workdir, over the real cgroupfs below cgroup_root, with a netns
    directory of its own (netns_dir()); stopped after."""
    socket = workdir / "agent.sock"
    netns_dir(workdir).mkdir(exist_ok=True)
    config = workdir / "nodeagent.yaml"
    config.write_text(
        json.dumps(  # JSON is YAML
            {
                "node_name": node_name,
                "log_level": "warning",
                "runtime_dir": str(workdir / "run"),
                "listen": {"socket": str(socket)},
                "host": {
                    "fs_root": "/",
                    "cgroup_root": cgroup_root,
                    "simulate": "cpufreq",
                    "netns_dir": str(netns_dir(workdir)),
                },
                "telemetry": {"metrics_listen": "127.0.0.1:0"},
                "restore_on_shutdown": True,  # the bench leaves the host as it found it
            }
        )
    )
    log = (workdir / "agent.log").open("wb")
    env = {**os.environ, "NOTIFY_SOCKET": str(workdir / "notify.sock"), "WATCHDOG_USEC": "200000"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "nodeagent", "--config", str(config)],
        cwd=REPO, stdout=log, stderr=log, env=env,
    )
    target = f"unix:{socket}"
    try:
        wait_ready(proc, target, workdir / "agent.log")
        yield proc, target
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


def netns_dir(workdir: Path) -> Path:
    return workdir / "netns"


def wait_ready(proc: subprocess.Popen[bytes], target: str, log: Path, timeout: float = 30.0) -> None:
    client = NodeAgentClient(target, timeout=1)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}:\n{log.read_text()[-2000:]}")
        try:
            client.inventory()
            client.close()
            return
        except NodeApiError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"agent not ready after {timeout}s:\n{log.read_text()[-2000:]}") from None
            time.sleep(0.05)


# ----------------------------------------------------------------------------- profiles


def one_knob(value: int) -> pb.Profile:
    return pb.Profile(
        cgroups=pb.CgroupsProfile(
            groups=[pb.CgroupSetting(path="one", cpu_quota_us=value, cpu_period_us=100_000)]
        )
    )


def big_profile(variant: int, cpus: int, netns: str | None, cpufreq: bool) -> pb.Profile:
    """Every CPU's governor (when cpufreq works), 20 cgroup files (4 groups x 5 knobs) and, with a
    netns, 5 tc objects."""
    governor = ("performance", "powersave")[variant]
    groups = [
        pb.CgroupSetting(
            path=f"big/g{i}",
            cpu_quota_us=(40_000, 60_000)[variant] + i,
            cpu_period_us=(100_000, 50_000)[variant],
            cpu_weight=(100, 200)[variant] + i,
            cpuset_cpus=("0", f"0-{cpus - 1}")[variant],
            memory_max_bytes=((256, 512)[variant] + i) << 20,
        )
        for i in range(4)
    ]
    profile = pb.Profile(cgroups=pb.CgroupsProfile(groups=groups))
    if cpufreq:
        profile.cpufreq.settings.append(pb.CpuFreqSetting(cpus="", governor=governor))
    if netns is not None:
        rates = (("10mbit", "20mbit"), ("30mbit", "40mbit"))[variant]
        classes = [pb.HtbClass(minor=10 + i, rate=rates[i % 2], ceil="100mbit") for i in range(4)]
        htb = pb.HtbQdisc(default_class=10, classes=classes)  # root qdisc + 4 classes = 5 objects
        profile.network.interfaces.append(pb.InterfaceShaping(name="veth0", netns=netns, htb=htb))
    return profile


def timed_applies(
    client: NodeAgentClient, profiles: Callable[[int], pb.Profile], n: int
) -> list[float]:
    latencies = []
    for i in range(n):
        profile = profiles(i)
        started = time.perf_counter()
        response = client.apply(profile, requester="bench")
        latencies.append((time.perf_counter() - started) * 1000)
        if i >= 2 and response.writes_performed == 0:
            raise RuntimeError("an alternating apply wrote nothing: the benchmark measures no write")
    return latencies


def direct_writes(cgroup_root: str, n: int) -> list[float]:
    """The baseline: the same cfs_quota write without the agent, through the same file layer."""
    fs = HostFS("/")
    rel = f"sys/fs/cgroup/cpu/{cgroup_root}/direct"
    fs.mkdir(rel)
    fs.write(f"{rel}/cpu.cfs_period_us", "100000")
    latencies = []
    for i in range(n):
        value = str((50_000, 60_000)[i % 2])
        started = time.perf_counter()
        fs.write(f"{rel}/cpu.cfs_quota_us", value)
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


GRPC_FLOOR_SERVER = """
import gc, sys
from concurrent.futures import ThreadPoolExecutor
import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from mlsysops.nodeconfig.v1 import nodeconfig_pb2 as pb, nodeconfig_pb2_grpc as pb_grpc
server = grpc.server(ThreadPoolExecutor(max_workers=8))
pb_grpc.add_NodeConfigServicer_to_server(pb_grpc.NodeConfigServicer(), server)
health_pb2_grpc.add_HealthServicer_to_server(health.HealthServicer(), server)
names = (pb.DESCRIPTOR.services_by_name["NodeConfig"].full_name, health.SERVICE_NAME, reflection.SERVICE_NAME)
reflection.enable_server_reflection(names, server)
server.add_insecure_port("unix:" + sys.argv[1])
server.start()
gc.collect()
gc.freeze()
server.wait_for_termination()
"""


def grpc_floor_rss(workdir: Path, calls: int = 1000) -> float:
    """RSS of the same interpreter serving the agent's gRPC services with empty handlers (no
    agent code): the part of the agent's footprint that grpc, protobuf and CPython take."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    socket = workdir / "floor.sock"
    proc = subprocess.Popen([sys.executable, "-c", GRPC_FLOOR_SERVER, str(socket)], cwd=REPO)
    try:
        stub = health_pb2_grpc.HealthStub(grpc.insecure_channel(f"unix:{socket}"))
        deadline = time.monotonic() + 30
        while True:
            try:
                stub.Check(health_pb2.HealthCheckRequest(), timeout=1)
                break
            except grpc.RpcError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the gRPC floor server did not start") from None
                time.sleep(0.05)
        for _ in range(calls):
            stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
        return rss_mib(proc.pid)
    finally:
        proc.kill()
        proc.wait()


class WatchdogSink:
    """The agent's systemd notifications (NOTIFY_SOCKET), with the time each WATCHDOG=1 came."""

    def __init__(self, path: Path) -> None:
        import socket
        import threading

        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.settimeout(0.5)
        self.pings: list[float] = []
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop:
            try:
                message = self._sock.recv(4096)
            except OSError:
                continue
            if b"WATCHDOG=1" in message:
                self.pings.append(time.monotonic())

    def max_gap_ms(self, since: float, until: float) -> float:
        times = [t for t in self.pings if since <= t <= until]
        bounds = [since, *times, until]
        return max((b - a) * 1000 for a, b in itertools.pairwise(bounds))

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self._sock.close()


def hostile_corpus() -> list[tuple[str, bytes]]:
    """Requests an attacker or a runaway script sends, each refused (method, serialised body)."""
    from google.protobuf import struct_pb2

    big_cpulist = ",".join(["0-8191"] * 40_000)  # 280 KB
    interfaces = [pb.InterfaceShaping(name=f"e{i % 9999}", remove=True) for i in range(50_000)]
    deep = struct_pb2.Value()
    inner = deep
    for _ in range(90):
        inner = inner.struct_value.fields["x"]
    inner.string_value = "leaf"
    deep_apply = pb.ApplyRequest()
    deep_apply.profile.extensions["plugin"].CopyFrom(struct_pb2.Struct(fields={"x": deep}))
    devices = [pb.Device(id=f"d{i}", attributes={"blob": "x" * 3900}) for i in range(900)]
    corpus = [
        ("Apply", pb.ApplyRequest(profile=one_knob(50_000), requester="\x1b[2J" * 1000).SerializeToString()),
        ("Apply", pb.ApplyRequest(profile=pb.Profile(cgroups=pb.CgroupsProfile(groups=[
            pb.CgroupSetting(path="h", cpuset_cpus=big_cpulist)]))).SerializeToString()),
        ("Apply", pb.ApplyRequest(profile=pb.Profile(network=pb.NetworkProfile(
            interfaces=interfaces)), dry_run=True).SerializeToString()),
        ("Apply", deep_apply.SerializeToString()),
        ("Apply", b"\xff\xfe garbage \x00" * 100),
        ("ReportDevices", pb.ReportDevicesRequest(source="s", devices=devices).SerializeToString()),
        ("SetTelemetryConfig", pb.SetTelemetryConfigRequest(
            collectors=[pb.Collector(name="x" * 100_000)]).SerializeToString()),
        ("Apply", pb.ApplyRequest(profile=pb.Profile(cgroups=pb.CgroupsProfile(groups=[
            pb.CgroupSetting(path="app\n", cpu_weight=5), pb.CgroupSetting(path="/".join(["x" * 255] * 20))
        ]))).SerializeToString()),
    ]
    return corpus * 25


def run_hostile(target: str) -> tuple[int, int]:
    """Send the corpus from two threads; returns (refused, unexpected INTERNAL/UNKNOWN answers)."""
    from concurrent.futures import ThreadPoolExecutor

    channel = grpc.insecure_channel(target, options=[("grpc.max_send_message_length", 8 << 20)])
    counts = {"refused": 0, "internal": 0}

    def send(item: tuple[str, bytes]) -> None:
        call = channel.unary_unary(
            f"/mlsysops.nodeconfig.v1.NodeConfig/{item[0]}",
            request_serializer=None,
            response_deserializer=None,
        )
        try:
            call(item[1], timeout=60)
        except grpc.RpcError as exc:
            bad = exc.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
            counts["internal" if bad else "refused"] += 1

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(send, hostile_corpus()))
    channel.close()
    return counts["refused"], counts["internal"]


def lock_waits(client: NodeAgentClient, until: Callable[[], bool]) -> list[float]:
    """Latencies of one-knob dry runs (each takes the engine lock) until `until()` holds."""
    latencies = []
    while not until():
        started = time.perf_counter()
        client.apply(one_knob(50_000), dry_run=True, requester="bench")
        latencies.append((time.perf_counter() - started) * 1000)
    return latencies


def reset_quietly(client: NodeAgentClient) -> None:
    try:
        client.reset()
    except NodeApiError as exc:  # the agent restores on SIGTERM too; cleanup goes on
        print(f"bench: reset failed: {exc}", file=sys.stderr)


# ----------------------------------------------------------------------------- main


def measure(args: argparse.Namespace) -> dict[str, Any]:
    tag = f"mlsysops-bench-{os.getpid()}"
    result: dict[str, Any] = {"bench": "nodeagent", "tag": tag}  # names of its cgroups and netns
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=f"{tag}-")))
        cgroup_root = stack.enter_context(private_cgroups(tag))
        sink = WatchdogSink(workdir / "notify.sock")
        stack.callback(sink.close)
        proc, target = stack.enter_context(running_agent(workdir, cgroup_root))
        client = stack.enter_context(NodeAgentClient(target, timeout=30))
        stack.callback(reset_quietly, client)  # originals back before the agent stops

        time.sleep(args.settle_seconds)  # start-up work (probes, first samples) is not idle time
        result["rss_mib_idle"] = round(rss_mib(proc.pid), 2)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        time.sleep(args.idle_seconds)
        result["idle_cpu_pct"] = round((cpu_seconds(proc.pid) - cpu0) / (time.monotonic() - t0) * 100, 3)
        result["idle_seconds"] = args.idle_seconds
        # The namespace comes after the idle figures: listing a named namespace's interfaces is
        # netlink's job, and the agent loads pyroute2 only once a request needs it.
        netns = stack.enter_context(private_netns(tag, netns_dir(workdir)))
        stack.callback(reset_quietly, client)  # its shaping restored before the namespace goes

        latencies = timed_applies(client, lambda i: one_knob((50_000, 60_000)[i % 2]), args.applies)
        result["applies"] = args.applies
        result["apply_p50_ms"] = round(percentile(latencies, 50), 3)
        result["apply_p99_ms"] = round(percentile(latencies, 99), 3)
        result["rss_mib_after_10k_applies"] = round(rss_mib(proc.pid), 2)
        direct = direct_writes(cgroup_root, min(args.applies, 5000))
        result["direct_write_p99_ms"] = round(percentile(direct, 99), 4)

        client.apply(one_knob(70_000), requester="bench")
        again = client.apply(one_knob(70_000), requester="bench")
        result["reapply_writes"] = again.writes_performed

        inventory = client.inventory()
        mechanisms = {m.name: m for m in inventory.mechanisms}
        network, cpufreq = mechanisms.get("network"), mechanisms.get("cpufreq")
        if network is None or not network.available or netns is None:
            why = "no network namespace" if netns is None else (network.reason if network else "not loaded")
            result["profile_network"] = f"unavailable: {why}; profile without tc objects"
            netns = None
        else:
            result["profile_network"] = "htb root + 4 classes on veth0 in a private netns"
        use_cpufreq = cpufreq is not None and cpufreq.available
        cpus = len(inventory.cpus) or os.cpu_count() or 1
        if use_cpufreq:
            governed = sum(1 for cpu in inventory.cpus if cpu.cpufreq_available)
            result["profile_cpufreq"] = f"governor of {governed} of {cpus} CPUs"
        else:
            why = cpufreq.reason if cpufreq is not None else "not loaded"
            result["profile_cpufreq"] = f"unavailable: {why}; profile without governors"
        profiles = [big_profile(v, cpus, netns, use_cpufreq) for v in (0, 1)]
        try:
            first = client.apply(profiles[0], requester="bench")
        except NodeApiError as exc:
            if netns is None:
                raise
            result["profile_network"] = f"failed: {exc.details}; profile without tc objects"
            profiles = [big_profile(v, cpus, None, use_cpufreq) for v in (0, 1)]
            first = client.apply(profiles[0], requester="bench")
        result["profile_writes"] = first.writes_performed
        plat = timed_applies(client, lambda i: profiles[(i + 1) % 2], args.profile_applies)
        result["profile_p50_ms"] = round(percentile(plat, 50), 3)
        result["profile_p99_ms"] = round(percentile(plat, 99), 3)
        result["rss_mib_shaping"] = round(rss_mib(proc.pid), 2)

        import threading

        idle_waits = lock_waits(client, _after(0.5))
        finished = threading.Event()
        outcome: list[tuple[int, int]] = []
        started = time.monotonic()
        def corpus() -> None:
            try:
                outcome.append(run_hostile(target))
            finally:
                finished.set()

        hostile = threading.Thread(target=corpus)
        hostile.start()
        waits = lock_waits(client, finished.is_set)
        hostile.join()
        ended = time.monotonic()
        result["hostile_requests"] = len(hostile_corpus())
        result["hostile_refused"], result["hostile_internal"] = outcome[0] if outcome else (0, -1)
        result["hostile_seconds"] = round(ended - started, 2)
        result["max_lock_hold_ms_hostile"] = round(max(waits, default=0.0) - percentile(idle_waits, 50), 2)
        result["watchdog_gap_ms_hostile"] = round(sink.max_gap_ms(started, ended), 1)
        time.sleep(1.0)
        result["rss_mib_after_hostile"] = round(rss_mib(proc.pid), 2)

        floor = round(grpc_floor_rss(workdir), 2)
        result["rss_mib_above_grpc_floor"] = round(result["rss_mib_idle"] - floor, 2)
        result["rss_mib_above_grpc_floor_shaping"] = round(result["rss_mib_shaping"] - floor, 2)

    result["targets"] = TARGETS
    result["baseline"] = {
        "grpc_server_rss_mib": floor,
        "agent_rss_above_grpc_mib": round(result["rss_mib_after_10k_applies"] - floor, 2),
        "direct_write_p99_ms": result["direct_write_p99_ms"],
        "apply_overhead_p99_ms": round(result["apply_p99_ms"] - result["direct_write_p99_ms"], 3),
    }
    result["meets_targets"] = (
        result["idle_cpu_pct"] <= TARGETS["idle_cpu_pct_max"]
        and result["apply_p99_ms"] <= TARGETS["apply_p99_ms_max"]
        and result["profile_p99_ms"] <= TARGETS["profile_p99_ms_max"]
        and result["reapply_writes"] == TARGETS["reapply_writes"]
        and result["rss_mib_above_grpc_floor"] <= TARGETS["rss_mib_above_grpc_floor_max"]
        and result["rss_mib_after_hostile"] - result["rss_mib_idle"]
        <= TARGETS["rss_mib_after_hostile_above_idle_max"]
        and result["max_lock_hold_ms_hostile"] <= TARGETS["max_lock_hold_ms_hostile_max"]
        and result["watchdog_gap_ms_hostile"] <= TARGETS["watchdog_gap_ms_hostile_max"]
        and result["hostile_internal"] == 0
    )
    return result


def _after(seconds: float) -> Callable[[], bool]:
    deadline = time.monotonic() + seconds
    return lambda: time.monotonic() >= deadline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--applies", type=int, default=10_000, help="single-knob applies (default 10000)")
    parser.add_argument("--profile-applies", type=int, default=300, help="whole-profile applies")
    parser.add_argument("--idle-seconds", type=float, default=20.0, help="idle CPU measurement window")
    parser.add_argument("--settle-seconds", type=float, default=3.0, help="wait after start-up")
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print(json.dumps({"bench": "nodeagent", "skipped": "needs root (real cgroupfs, netns)"}))
        return 0
    print(json.dumps(measure(args)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
