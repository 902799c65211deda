"""Runtime benchmark: verified runtime switches against cold `ctr run`, on a private containerd.

Starts a private containerd 1.6 (own root, state, socket; removed afterwards) with the agent's
handler drop-in, imports the busybox test image from an OCI tarball, discovers the handlers, then:

- switch_p50_ms / switch_p99_ms: a running workload switched runc -> runsc -> runc, each switch
  verified (the new task RUNNING through the agent's verify window, `verify_window_ms`);
- ctr_run_p50_ms: the baseline, measured in the same run: a cold `ctr run --rm` of the same image
  running `true` with the same handler (runsc through the same wrapper);
- switch_vs_ctr_ratio: switch_p50_ms / ctr_run_p50_ms (goal: at most 1.5);
- rss_growth_mib: the agent process's RSS with the runtime service loaded and used (containerd
  client, handler discovery) minus without it (goal: at most 3 MiB).

The last line printed is one JSON object. Run as root: `python bench/runtimes.py [--cycles 10]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
REPO = HERE.parent
sys.path.insert(0, str(REPO / "tests" / "nodeagent" / "runtimes"))  # the private containerd and test image

from ociimage import write_oci_tarball  # noqa: E402
from privated import PrivateContainerd, remove_cgroups  # noqa: E402

from nodeagent.host.containerd import ContainerdClient  # noqa: E402
from nodeagent.host.ocitar import read_tarball  # noqa: E402
from nodeagent.mechanisms.runtime_handlers import standard_handlers  # noqa: E402
from nodeagent.service.runtime_handlers import HandlerCatalog  # noqa: E402
from nodeagent.service.workloads import WorkloadService, WorkloadSettings  # noqa: E402

NAMESPACE = f"mlsysops-bench-{os.getpid()}"  # runc state and cgroup root of its own
IMAGE = "mlsysops.bench/busybox:1"
#: Exits at once on SIGTERM (a shell waiting in `wait` is interrupted by the trap).
WORKLOAD = ["/bin/sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1 & wait $!; done"]

RSS_PROBE = """
import os, sys
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
import nodeagent.bootstrap  # the agent without the runtime service
before = rss()
if sys.argv[1] == "with":
    from nodeagent.host.containerd import ContainerdClient
    from nodeagent.service.runtime_handlers import HandlerCatalog
    from nodeagent.service.workloads import WorkloadService, WorkloadSettings
    from pathlib import Path
    client = ContainerdClient(sys.argv[2], sys.argv[3])
    client.version()
    [c.id for c in client.containers()]
print(rss())
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def rss_with_and_without(address: str) -> float:
    def one(mode: str) -> float:
        done = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, mode, address, NAMESPACE],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO,
        )
        return float(done.stdout.split()[-1])

    return round(
        statistics.median(one("with") for _ in range(3))
        - statistics.median(one("without") for _ in range(3)),
        2,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10, help="runc -> runsc -> runc cycles")
    args = parser.parse_args()
    daemon = PrivateContainerd(Path(tempfile.mkdtemp(prefix="mlsysops-bench-ctd-")))
    daemon.write_config()
    wrapper = daemon.base / "runsc-wrapper"
    catalog = HandlerCatalog(
        config_path=daemon.config,
        dropin_path=daemon.dropin_dir / "mlsysops-runtimes.toml",
        wrapper_path=wrapper,
        wanted=standard_handlers(str(wrapper)),
    )
    catalog.ensure_dropin(restart=None)
    daemon.start()
    settings = WorkloadSettings(
        namespace=NAMESPACE, log_dir=daemon.base / "logs", cgroup_root=NAMESPACE, probe_image=IMAGE
    )
    service = WorkloadService(ContainerdClient(daemon.address, NAMESPACE), catalog, settings)
    try:
        service.client.ensure_namespace()
        service.client.import_image(read_tarball(write_oci_tarball(daemon.base / "image.tar", IMAGE)), IMAGE)
        handlers = {h.name: h.available for h in service.discover()}
        service.run({"name": "bench", "image": IMAGE, "handler": "runc", "args": WORKLOAD})
        switches: list[float] = []
        for _ in range(args.cycles):
            for target in ("runsc", "runc"):
                start = time.perf_counter()
                result = service.switch("bench", target)
                switches.append((time.perf_counter() - start) * 1000)
                if not result.ok:
                    raise SystemExit(f"switch to {target} failed: {result.error}")
        service.stop("bench")
        ctr_runs: list[float] = []
        for i in range(args.cycles):
            for target in ("runsc", "runc"):
                extra = ["--runc-binary", str(wrapper)] if target == "runsc" else []
                start = time.perf_counter()
                daemon.ctr(
                    "run",
                    "--rm",
                    "--runtime",
                    "io.containerd.runc.v2",
                    *extra,
                    IMAGE,
                    f"ctr-{i}-{target}",
                    "/bin/true",
                    namespace=NAMESPACE,
                )
                ctr_runs.append((time.perf_counter() - start) * 1000)
        rss_growth = rss_with_and_without(daemon.address)
    finally:
        service.client.close()
        daemon.destroy([NAMESPACE])
        remove_cgroups(NAMESPACE)
    switch_p50 = statistics.median(switches)
    ctr_p50 = statistics.median(ctr_runs)
    figures = {
        "bench": "runtimes",
        "handlers": handlers,
        "switch_p50_ms": round(switch_p50, 1),
        "switch_p99_ms": round(percentile(switches, 0.99), 1),
        "ctr_run_p50_ms": round(ctr_p50, 1),
        "switch_vs_ctr_ratio": round(switch_p50 / ctr_p50, 2),
        "switches": len(switches),
        "verify_window_ms": round(settings.verify_window_s * 1000),
        "rss_growth_mib": rss_growth,
        "targets": {"switch_vs_ctr_ratio_max": 1.5, "rss_growth_mib_max": 3},
        "containerd": "private 1.6 (own root, state, socket)",
        "cpus": os.cpu_count(),
    }
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
