"""A Debian rootfs with systemd and the project installed, booted in systemd-nspawn, for the
tests that run the units under a real service manager.

The rootfs comes from `mmdebstrap` (Debian's own packages: systemd, dbus, python3, procps for
the agent unit's /bin/kill, libstdc++6 for grpcio's wheel). The project goes into a venv at
/opt/mlsysops made by the rootfs's own python3, as the README's install does, and without the
internet: the dependencies are copied from this test venv's site-packages, file by file as each
distribution's RECORD lists them (the same CPython minor, so compiled wheels fit: Debian 12 and
this venv both run 3.11), and the project itself is a wheel that `pip wheel --no-build-isolation`
builds from the working tree, installed by the rootfs's pip, so its console scripts name
/opt/mlsysops/bin/python. Bind-mounting this venv instead does not work: its python lives under
/root (pyenv), which the units' ProtectHome=yes hides from the daemons.

`--private-network` gives the container its own loopback, so its daemons' ports (8000, 9465,
9466) cannot collide with anything on the host, and the CAP_NET_ADMIN nspawn grants only then.
`--register=no` means no machined, so `systemctl --machine` and `systemd-run --machine` cannot
reach the container: commands enter its namespaces with `nsenter -t <leader pid> -a` instead.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).parents[2]
SUITE = "bookworm"
PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "procps", "libstdc++6")
VENV = "/opt/mlsysops"
PYTHON_MINOR = f"python{sys.version_info.major}.{sys.version_info.minor}"
EXTRAS = ("node", "bridge", "controller")
# What the wheel is not built from (MANIFEST.in prunes the rest): not copied for the build.
NOT_BUILT = (".git", ".venv", "node_modules", "build", "dist", "tests", "bench", "demo", "*.egg-info",
             "__pycache__", ".*_cache", ".hypothesis", "*.mpy")  # fmt: skip


def build_rootfs(target: Path) -> None:
    """A minimal bootable Debian (about 50 s on this machine, most of it downloads and dpkg)."""
    subprocess.run(
        [
            "mmdebstrap", "--quiet", "--variant=essential", f"--include={','.join(PACKAGES)}",
            *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("man", "doc", "locale")),
            SUITE, str(target),
        ],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def _closure(
    requires: list[str], extras: frozenset[str], seen: set[tuple[str, frozenset[str]]]
) -> None:
    """Every distribution `requires` (with `extras`) needs, as installed here (markers as pip reads them)."""
    environments = [{"extra": extra} for extra in (*extras, "")]
    for requirement in map(Requirement, requires):
        marker = requirement.marker
        if marker is not None and not any(marker.evaluate(env) for env in environments):
            continue
        wanted = (canonicalize_name(requirement.name), frozenset(requirement.extras))
        if wanted not in seen:
            seen.add(wanted)
            _closure(metadata.requires(requirement.name) or [], wanted[1], seen)


def wheel_requires(wheel: Path) -> list[str]:
    """Requires-Dist of the wheel (the editable install's metadata may predate pyproject.toml)."""
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(archive.read(name).decode()).get_all("Requires-Dist") or []


def copy_dependencies(wheel: Path, site_packages: Path) -> list[str]:
    """The wheel's runtime dependencies (and pip), copied from here into `site_packages`; their names."""
    seen: set[tuple[str, frozenset[str]]] = set()
    _closure(wheel_requires(wheel), frozenset(EXTRAS), seen)
    names = {name for name, _ in seen if name != "mlsysops"} | {"pip"}  # the project comes as a wheel
    for name in sorted(names):
        dist = metadata.distribution(name)
        base = Path(str(dist.locate_file("")))
        for entry in dist.files or []:
            source = (base / entry).resolve()
            if "__pycache__" in entry.parts or not source.is_relative_to(base.resolve()):
                continue  # compiled caches, and scripts in bin/ that name this venv's python
            target = site_packages / entry
            if source.is_file():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
    return sorted(names)


def build_wheel(workdir: Path) -> Path:
    """The working tree's wheel, built offline from a copy (setuptools builds in the source
    directory, and a build/ left in the shared tree would carry stale files into later wheels)."""
    source = workdir / "source"
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(*NOT_BUILT))
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(workdir / "wheelhouse"), str(source)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    return next((workdir / "wheelhouse").glob("mlsysops-*.whl"))


def install_project(rootfs: Path, workdir: Path) -> None:
    """/opt/mlsysops in the rootfs: a venv of its python3, the dependencies, the project's wheel."""
    wheel = build_wheel(workdir)
    chroot = ["chroot", str(rootfs)]
    subprocess.run([*chroot, "python3", "-m", "venv", "--without-pip", VENV], check=True, timeout=60)
    copy_dependencies(wheel, rootfs / VENV.lstrip("/") / "lib" / PYTHON_MINOR / "site-packages")
    shutil.copy2(wheel, rootfs / "tmp" / wheel.name)
    subprocess.run(
        [*chroot, f"{VENV}/bin/python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", f"/tmp/{wheel.name}"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@dataclass
class Container:
    """A booted systemd-nspawn container; `run` executes a command inside it (all namespaces)."""

    process: subprocess.Popen[bytes]
    leader: int

    def run(self, *command: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            ["nsenter", "-t", str(self.leader), "-a", *command],
            capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(command)}: exit {done.returncode}\n{done.stdout}{done.stderr}")
        return done

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, prop: str) -> str:
        return self.systemctl("show", "--value", "-p", prop, unit).stdout.strip()

    def poweroff(self, timeout: float = 60) -> int:
        self.run("systemctl", "poweroff", "--no-block", check=False)
        return self.process.wait(timeout=timeout)


def boot(rootfs: Path, log: Path, timeout: float = 60) -> Container:
    """Boot `rootfs` and wait until its system manager says the boot finished."""
    process = subprocess.Popen(
        ["systemd-nspawn", "--boot", "--register=no", "--keep-unit", "--console=passive",
         "--private-network", "--directory", str(rootfs), "--machine=mlsysops-test"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    leader = None
    while leader is None:
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
        pids = children.read_text().split() if children.exists() else []
        leader = int(pids[0]) if pids else None
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"systemd-nspawn did not start: {log.read_text()}")
        time.sleep(0.1)
    container = Container(process, leader)
    state = ""
    while state not in ("running", "degraded"):  # "" while the container's bus is not up yet
        if time.monotonic() > deadline:
            raise AssertionError(f"boot ended {state!r}: {log.read_text()}")
        time.sleep(0.2)
        answer = container.run("systemctl", "is-system-running", "--wait", timeout=timeout, check=False)
        state = answer.stdout.strip()
    return container
