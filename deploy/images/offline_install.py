"""The project installed into a Debian rootfs without the internet: shared by the image builder
(deploy/images/build_images.py) and the systemd tests (tests/packaging/systemd_rootfs.py).

The rootfs comes from `mmdebstrap` (Debian's own packages). The project goes into a venv at
/opt/mlsysops made by the rootfs's own python3, as the README's install does: the dependencies
are copied from the building venv's site-packages, file by file as each distribution's RECORD
lists them (the same CPython minor, so compiled wheels fit: Debian 12 and the project's venv both
run 3.11; `check_python` refuses any other pairing), and the project itself is a wheel that
`pip wheel --no-build-isolation` builds from the working tree, installed by the rootfs's pip, so
its console scripts name /opt/mlsysops/bin/python.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from email.parser import Parser
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).parents[2]
SUITE = "bookworm"
VENV = "/opt/mlsysops"
PYTHON_MINOR = f"python{sys.version_info.major}.{sys.version_info.minor}"
EXTRAS = ("node", "bridge", "controller")
# What the wheel is not built from (MANIFEST.in prunes the rest): not copied for the build.
NOT_BUILT = (".git", ".venv", "node_modules", "build", "dist", "tests", "bench", "demo", "*.egg-info",
             "__pycache__", ".*_cache", ".hypothesis", "*.mpy")  # fmt: skip


def debian_rootfs(target: Path, variant: str, packages: Iterable[str]) -> None:
    """A Debian `SUITE` tree at `target` with `packages`, without manuals, docs or locales."""
    subprocess.run(
        [
            "mmdebstrap", "--quiet", f"--variant={variant}", f"--include={','.join(packages)}",
            *(f"--dpkgopt=path-exclude=/usr/share/{d}/*" for d in ("man", "doc", "locale")),
            SUITE, str(target),
        ],
        check=True, capture_output=True, text=True, timeout=600,
    )  # fmt: skip


def check_python(rootfs: Path) -> None:
    """Refuse a rootfs whose python3 is not this interpreter's minor: copied wheels would not load."""
    if not (rootfs / "usr" / "lib" / PYTHON_MINOR).is_dir():
        raise RuntimeError(f"{rootfs} has no {PYTHON_MINOR}: build with the Python of Debian {SUITE}")


def _closure(requires: list[str], extras: frozenset[str], seen: set[tuple[str, frozenset[str]]]) -> None:
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


def copy_dependencies(wheel: Path, site_packages: Path, extras: Iterable[str] = EXTRAS) -> list[str]:
    """The wheel's runtime dependencies with `extras` (and pip), copied from here into
    `site_packages`; their names."""
    seen: set[tuple[str, frozenset[str]]] = set()
    _closure(wheel_requires(wheel), frozenset(extras), seen)
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


def install_venv(rootfs: Path, wheel: Path, extras: Iterable[str] = EXTRAS) -> None:
    """/opt/mlsysops in the rootfs: a venv of its python3, the dependencies `extras` need, the wheel."""
    check_python(rootfs)
    chroot = ["chroot", str(rootfs)]
    subprocess.run([*chroot, "python3", "-m", "venv", "--without-pip", VENV], check=True, timeout=60)
    copy_dependencies(wheel, rootfs / VENV.lstrip("/") / "lib" / PYTHON_MINOR / "site-packages", extras)
    shutil.copy2(wheel, rootfs / "tmp" / wheel.name)
    subprocess.run(
        [*chroot, f"{VENV}/bin/python", "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--disable-pip-version-check", "--no-cache-dir", f"/tmp/{wheel.name}"],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    (rootfs / "tmp" / wheel.name).unlink()
