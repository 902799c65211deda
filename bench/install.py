"""Install footprint per role: what each extra adds to a clean venv, and what its daemon imports.

For each role (core, node, bridge, controller) this builds the wheel once, installs
`mlsysops-*.whl[role]` into a fresh venv and reports:

- installed_mib: the venv's site-packages above a clean venv's (pip and setuptools excluded);
- extra_mib: the same minus the core's, i.e. what the extra alone adds;
- import_mib: RSS of a fresh interpreter after importing the role's daemon entry point;
- foreign: packages of another role's extra that the venv received (must be empty).

The last line printed is one JSON object; the goal is node ≤ 40 MiB installed. The functions
that build the venvs are also used by tests/packaging (the per-role install checks).
`python bench/install.py [--keep DIR]`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROLES = ("core", "node", "bridge", "controller")
#: what each role's daemon imports at start-up (after its extra check)
ENTRY_MODULES = {
    "core": "mlsysops.cli",
    "node": "nodeagent.bootstrap",
    "bridge": "faredge.bootstrap",
    "controller": "controller.reconcile.bootstrap",
}
GOALS = {"node_installed_mib": 40.0}
_ENV = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONDONTWRITEBYTECODE": "1"}
_NOT_COUNTED = ("pip", "setuptools", "_distutils_hack", "pkg_resources", "distutils-precedence.pth")


@dataclass(frozen=True)
class Venv:
    root: Path

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    def bin(self, name: str) -> Path:
        return self.root / "bin" / name

    def site_packages(self) -> Path:
        return next((self.root / "lib").glob("python3*/site-packages"))

    def distributions(self) -> set[str]:
        """Canonical names of what is installed (pip and setuptools aside)."""
        listing = subprocess.run(
            [str(self.python), "-m", "pip", "list", "--format=json"],
            check=True,
            capture_output=True,
            text=True,
            env=_ENV,
        )
        names = {p["name"].lower().replace("_", "-") for p in json.loads(listing.stdout)}
        return names - {"pip", "setuptools"}


def build_dists(outdir: Path) -> tuple[Path, Path]:
    """(wheel, sdist) of the working tree, built the way a release is (python -m build)."""
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(outdir), str(REPO)],
        check=True,
        capture_output=True,
        text=True,
        env=_ENV,
    )
    return next(outdir.glob("mlsysops-*.whl")), next(outdir.glob("mlsysops-*.tar.gz"))


def make_venv(root: Path, requirement: str | None) -> Venv:
    """A fresh venv with `requirement` (e.g. 'dist/mlsysops-0.1.0-py3-none-any.whl[node]') installed."""
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, env=_ENV)
    venv = Venv(root)
    if requirement is not None:
        done = subprocess.run(
            [str(venv.python), "-m", "pip", "install", "--quiet", requirement],
            capture_output=True,
            text=True,
            env=_ENV,
        )
        if done.returncode != 0:
            raise RuntimeError(f"pip install {requirement} failed:\n{done.stdout}{done.stderr}")
    return venv


def requirement(wheel: Path, role: str) -> str:
    return str(wheel) if role == "core" else f"{wheel}[{role}]"


def site_mib(venv: Venv) -> float:
    total = 0
    for entry in venv.site_packages().iterdir():
        if entry.name.startswith(_NOT_COUNTED):
            continue
        files = [entry] if entry.is_file() else [p for p in entry.rglob("*") if p.is_file()]
        total += sum(p.stat().st_size for p in files)
    return total / 2**20


def import_mib(venv: Venv, module: str) -> float:
    probe = (
        f"import {module}\n"
        "for line in open('/proc/self/status'):\n"
        "    if line.startswith('VmRSS:'): print(int(line.split()[1]) / 1024)\n"
    )
    done = subprocess.run(
        [str(venv.python), "-c", probe], check=True, capture_output=True, text=True, cwd="/", env=_ENV
    )
    return float(done.stdout.strip())


def measure(workdir: Path) -> dict[str, object]:
    wheel, _sdist = build_dists(workdir / "dist")
    clean = site_mib(make_venv(workdir / "clean", None))
    venvs = {role: make_venv(workdir / role, requirement(wheel, role)) for role in ROLES}
    installed = {role: round(site_mib(v) - clean, 2) for role, v in venvs.items()}
    core = venvs["core"].distributions()
    own = {role: venvs[role].distributions() - core for role in ROLES if role != "core"}
    roles: dict[str, object] = {}
    for role, venv in venvs.items():
        others = set().union(*(names for other, names in own.items() if other != role))
        mine = own.get(role, set())
        roles[role] = {
            "installed_mib": installed[role],
            "extra_mib": round(installed[role] - installed["core"], 2),
            "import_mib": round(import_mib(venv, ENTRY_MODULES[role]), 2),
            "foreign": sorted((venv.distributions() - core - mine) & others),
        }
    return {
        "bench": "install",
        "roles": roles,
        "baseline": {"clean_venv_mib": round(clean, 2)},
        "goals": GOALS,
        "meets_goals": installed["node"] <= GOALS["node_installed_mib"]
        and all(not r["foreign"] for r in roles.values()),  # type: ignore[index]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build the venvs here and keep them")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = measure(args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="mlsysops-bench-install-") as tmp:
            result = measure(Path(tmp))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
