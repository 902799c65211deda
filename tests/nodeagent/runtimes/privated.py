"""A private containerd for tests and the benchmark: its own root, state, socket and config file
(which imports the agent's drop-in directory), never the host's. `ctr` is the independent checker."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

CONTAINERD = "/usr/bin/containerd"
CTR = "/usr/bin/ctr"


@dataclass
class PrivateContainerd:
    base: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = field(default=0)

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def address(self) -> str:
        return str(self.base / "containerd.sock")

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def dropin_dir(self) -> Path:
        return self.base / "conf.d"

    def write_config(self) -> None:
        self.dropin_dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            f"""version = 2
root = "{self.root}"
state = "{self.state}"
imports = ["{self.dropin_dir}/*.toml"]
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{self.address}"
[ttrpc]
  address = "{self.address}.ttrpc"
[debug]
  level = "warn"
""",
            encoding="utf-8",
        )

    def start(self, timeout: float = 20.0) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        if not self.config.exists():
            self.write_config()
        log = open(self.base / "containerd.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [CONTAINERD, "--config", str(self.config)], stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited: {(self.base / 'containerd.log').read_text()[-2000:]}")
            if os.path.exists(self.address) and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("containerd did not come up")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.restarts += 1
        self.start()

    def ctr(
        self, *args: str, namespace: str = "default", check: bool = True, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [CTR, "--address", self.address, "--namespace", namespace, *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def destroy(self, namespaces: list[str]) -> None:
        """Kill every task we may have left, stop containerd and remove all of its state."""
        for ns in namespaces:
            listing = self.ctr("tasks", "ls", "-q", namespace=ns, check=False).stdout.split()
            for task in listing:
                self.ctr("tasks", "kill", "-s", "SIGKILL", "-a", task, namespace=ns, check=False)
            time.sleep(0.2 if listing else 0)
            for task in listing:
                self.ctr("tasks", "rm", "-f", task, namespace=ns, check=False)
        self.stop()
        _unmount_below(self.base)
        shutil.rmtree(self.base, ignore_errors=True)
        for ns in namespaces:  # the runc shim's state root of each namespace (empty by now)
            with contextlib.suppress(OSError):
                os.rmdir(f"/run/containerd/runc/{ns}")


def _unmount_below(base: Path) -> None:
    prefix = str(base)
    with open("/proc/self/mounts", encoding="utf-8") as mounts:
        targets = [line.split()[1] for line in mounts if line.split()[1].startswith(prefix)]
    for target in sorted(targets, key=len, reverse=True):
        subprocess.run(["umount", "-l", target], check=False)


def remove_cgroups(root: str) -> None:
    """The (empty) parent cgroups our tasks were created in, in every hierarchy."""
    for hierarchy in Path("/sys/fs/cgroup").iterdir():
        top = hierarchy / root
        if top.is_dir():
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()
