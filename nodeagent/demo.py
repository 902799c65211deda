"""The node agent's part of `make demo`: a real agent that touches nothing of the host's own.

`agent(workdir)` starts `python -m nodeagent` on demo defaults: cgroups below a private root
(`mlsysops-demo-<pid>` in every hierarchy), shaping on one end of a veth pair inside a network
namespace the demo creates, cpufreq simulated under the workdir when the machine has none, a
socket and journal in the workdir. The demo's config sets `restore_on_shutdown: true` (a
production agent keeps its settings across a restart), so on exit SIGTERM restores every
original even when the tour stopped half-way, and the demo removes what it created itself.
`tour(target)` then drives it through the `mlsysops node` CLI like an operator would.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import click

from mlsysops.nodeapi import NodeAgentClient, NodeApiError

CGROUP_MOUNT = Path("/sys/fs/cgroup")
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 60.0
VETH = "mls-demo0"  # the end the agent shapes; lives in the demo's namespace
PEER = "mls-demo1"


def demo_names() -> tuple[str, str]:
    """(cgroup root, netns name), unique per demo process so parallel runs do not collide."""
    suffix = f"mlsysops-demo-{os.getpid()}"
    return suffix, suffix


def demo_profile(netns: str) -> str:
    return textwrap.dedent(
        f"""\
        # A demo profile: the same YAML the controller's node mechanism sends as a Profile message.
        cpufreq:
          settings:
            - cpus: "0"
              governor: powersave
        cgroups:
          groups:
            - path: app
              cpu_quota_us: 50000
              cpu_period_us: 100000
              cpu_weight: 200
              memory_max_bytes: 268435456
        network:
          interfaces:
            - name: {VETH}
              netns: {netns}
              tbf: {{rate: 10mbit, burst: 32kb, latency: 50ms}}
        """
    )


def demo_config(workdir: Path, cgroup_root: str, extra: str = "") -> str:
    """The agent's config; `extra` comes first (more top-level YAML sections, e.g. `runtimes:`)."""
    return extra + textwrap.dedent(
        f"""\
        node_name: demo
        runtime_dir: {workdir}/run
        listen: {{socket: {workdir}/nodeagent.sock}}
        host: {{cgroup_root: {cgroup_root}, simulate: cpufreq}}
        drift: {{interval_s: 5}}
        restore_on_shutdown: true   # the demo must leave the host as it found it, whatever happens
        telemetry: {{metrics_listen: "127.0.0.1:0"}}
        """
    )


@contextmanager
def agent(workdir: Path, extra_config: str = "") -> Iterator[str]:
    """A running demo agent; yields its gRPC target. Needs root (cgroups, namespaces).
    `extra_config`: more YAML sections for its config (the live loop's `runtimes:`)."""
    if os.geteuid() != 0:
        raise click.ClickException("the node-agent demo needs root (cgroups and network namespaces)")
    workdir.mkdir(parents=True, exist_ok=True)
    cgroup_root, netns = demo_names()
    (workdir / "nodeagent.yaml").write_text(demo_config(workdir, cgroup_root, extra_config))
    (workdir / "profile.yaml").write_text(demo_profile(netns))
    target = f"unix:{workdir}/nodeagent.sock"
    _create_netns(netns)
    proc: subprocess.Popen[bytes] | None = None
    try:
        with open(workdir / "nodeagent.log", "wb") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "nodeagent", "--config", str(workdir / "nodeagent.yaml")],
                stdout=subprocess.DEVNULL,
                stderr=log,
            )
        _wait_ready(target, proc, workdir / "nodeagent.log")
        yield target
    finally:
        if proc is not None:
            _stop(proc)
        _remove_netns(netns)
        _remove_cgroups(cgroup_root)


def tour(target: str) -> None:
    """A few `mlsysops node` calls against the demo agent, printed as an operator would see them."""
    profile = Path(target.removeprefix("unix:")).parent / "profile.yaml"
    for title, args in (
        ("what this node has", ["info"]),
        ("plan the demo profile (nothing is written)", ["apply", "-f", str(profile), "--dry-run"]),
        ("apply it", ["apply", "-f", str(profile)]),
        ("apply it again: nothing differs, so nothing is written", ["apply", "-f", str(profile)]),
        ("desired, actual and original values", ["state"]),
        ("re-time a telemetry collector live", ["telemetry", "set", "cpu", "--interval", "2s"]),
        ("put every original back", ["reset"]),
    ):
        _cli(target, title, args)


def show_devices(target: str) -> None:
    """The inventory again, now with the devices the far-edge bridge reported."""
    _cli(target, "inventory with reported devices", ["info"])


# ---------------------------------------------------------------- helpers


def _cli(target: str, title: str, args: list[str]) -> None:
    command = [_mlsysops(), "node", "--target", target, *args]
    click.secho(f"\n$ mlsysops node {' '.join(args)}    # {title}", fg="cyan")
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    click.echo((result.stdout + result.stderr).rstrip())
    if result.returncode != 0:
        raise click.ClickException(f"`mlsysops node {' '.join(args)}` failed with {result.returncode}")


def _mlsysops() -> str:
    found = shutil.which("mlsysops") or str(Path(sys.executable).with_name("mlsysops"))
    if not Path(found).exists():
        raise click.ClickException("the `mlsysops` command is not installed (pip install -e .)")
    return found


def _wait_ready(target: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    try:
        with NodeAgentClient(target) as client:
            client.wait_ready(READY_TIMEOUT_S)
    except NodeApiError as exc:
        raise click.ClickException(f"{exc} (exit {proc.poll()}):\n{log.read_text()}") from None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)  # restore_on_shutdown: every original back before exiting
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _create_netns(netns: str) -> None:
    _ip("netns", "add", netns)
    _ip("-n", netns, "link", "add", VETH, "type", "veth", "peer", "name", PEER)
    _ip("-n", netns, "link", "set", VETH, "up")
    _ip("-n", netns, "link", "set", PEER, "up")


def _remove_netns(netns: str) -> None:
    with suppress(subprocess.CalledProcessError):
        _ip("netns", "del", netns)  # takes the veth pair with it


def _remove_cgroups(cgroup_root: str) -> None:
    """Whatever of the demo's subtree is left (the agent's reset removes what it created)."""
    if not CGROUP_MOUNT.is_dir():
        return
    for hierarchy in [CGROUP_MOUNT, *(p for p in CGROUP_MOUNT.iterdir() if p.is_dir())]:
        top = hierarchy / cgroup_root
        if not top.is_dir():
            continue
        for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda w: -w[0].count("/")):
            with suppress(OSError):
                os.rmdir(dirpath)  # cgroupfs: rmdir of an empty group; the files go with it
