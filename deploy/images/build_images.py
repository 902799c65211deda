"""Container images of the three daemons and the model server, built here without a registry.

    python deploy/images/build_images.py [--out build/images]      (or `make images`)

One base layer, shared by the four images: a Debian rootfs from `mmdebstrap --variant=essential`
with python3 (and libstdc++6, which grpcio's wheel links) and the user `mlsysops` (10001:10001);
no systemd, no apt, no shell tools beyond Debian's essential set. On top, one layer per image:
/opt/mlsysops, a venv of the rootfs's python3 with the project installed offline for that role's
extra only (deploy/images/offline_install.py: the same install the systemd tests boot), compiled
to bytecode (the manifests run with a read-only root and PYTHONDONTWRITEBYTECODE), without pip,
and the directories the daemon writes, owned by its user. `umoci` packs the layers and writes the
OCI config; the result is an OCI image layout (`<out>/layout`, tags nodeagent, faredge,
controller, modelserver: `skopeo copy oci:<out>/layout:faredge docker://…` pushes one) and, per
image, an OCI layout tarball (`<out>/mlsysops-<name>.oci.tar`, what `ctr images import` and the
node agent's `--image-tarball` read) named by the reference the Kubernetes manifests (and the
API's `model_server_image`) use.

The last line printed is one JSON object: build times and image sizes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from offline_install import PYTHON_MINOR, REPO, VENV, build_wheel, debian_rootfs, install_venv

PACKAGES = ("python3", "libstdc++6")
REGISTRY = "mlsysops.example"  # what deploy/kubernetes/base names: retag for your registry
UID = GID = 10001  # the manifests' runAsUser/runAsGroup
PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Image:
    """One daemon's image: what it runs, as whom, and what it listens on and writes."""

    name: str  # the layout's tag; the reference is REGISTRY/mlsysops-<name>:<version>
    extra: str  # the project's extra the venv is installed with
    program: str  # console script in /opt/mlsysops/bin
    cmd: tuple[str, ...]  # its default arguments (`Cmd`): what the manifests' `args` say
    root: bool  # runs as uid 0 (else UID:GID)
    ports: tuple[str, ...]  # ExposedPorts
    writable: tuple[str, ...]  # directories the daemon writes, owned by its user
    description: str

    @property
    def user(self) -> str:
        return "0:0" if self.root else f"{UID}:{GID}"


IMAGES = (
    # Root: the agent writes root-owned cgroupfs and cpufreq files and tc qdiscs over netlink
    # (deploy/images/README.md); its metrics listen on the host's loopback, so no port is exposed.
    Image(
        "nodeagent",
        "node",
        "mlsysops-nodeagent",
        ("--config", "/etc/mlsysops/nodeagent.yaml"),
        True,
        (),
        ("/run/mlsysops", "/run/mlsysops-nodeagent"),
        "mlsysops node agent: node settings (cgroups, cpufreq, tc) and workloads over a unix socket",
    ),
    Image(
        "faredge",
        "bridge",
        "mlsysops-faredge",
        ("--config", "/etc/mlsysops/faredge.yaml"),
        False,
        ("9465/tcp",),
        ("/var/lib/mlsysops/faredge", "/run/mlsysops-faredge"),
        "mlsysops far-edge bridge: MicroPython boards over serial or MQTT, their twins and OTA",
    ),
    Image(
        "controller",
        "controller",
        "mlsysops-api",
        ("--config", "/etc/mlsysops/api.yaml"),
        False,
        ("8443/tcp",),
        ("/var/lib/mlsysops/api",),
        "mlsysops controller and northbound REST API",
    ),
    # The component /ml/deploy_ml creates runs it with its own arguments (the registry, the model
    # and alias, 0.0.0.0 and the port); the default ones serve the champion of `latency_p95_ms` from
    # a registry directory mounted at /var/lib/mlsysops/models.
    Image(
        "modelserver",
        "ml",
        "mlsysops-model-server",
        ("--registry", "/var/lib/mlsysops/models", "--model", "latency_p95_ms", "--host", "0.0.0.0"),
        False,
        ("8080/tcp",),
        (),
        "mlsysops model server: a registered model's predictions and explanations over HTTP",
    ),
)


def version() -> str:
    """The project's version (pyproject.toml): the images' tag, as in the manifests."""
    with (REPO / "pyproject.toml").open("rb") as pyproject:
        return str(tomllib.load(pyproject)["project"]["version"])


def reference(image: Image, tag: str) -> str:
    return f"{REGISTRY}/mlsysops-{image.name}:{tag}"


def _umoci(*args: str) -> None:
    done = subprocess.run(["umoci", *args], capture_output=True, text=True, timeout=600)
    if done.returncode != 0:  # umoci says why on stderr, which CalledProcessError would not show
        raise RuntimeError(f"umoci {' '.join(args[:3])}: {done.stderr.strip()}")


def base_rootfs(target: Path) -> None:
    """The shared base: Debian essential + python3, and the daemons' user (no passwd tools in it)."""
    debian_rootfs(target, "essential", PACKAGES)
    with (target / "etc" / "passwd").open("a", encoding="utf-8") as passwd:
        passwd.write(f"mlsysops:x:{UID}:{GID}:mlsysops daemons:/nonexistent:/usr/sbin/nologin\n")
    with (target / "etc" / "group").open("a", encoding="utf-8") as group:
        group.write(f"mlsysops:x:{GID}:\n")
    for log in (target / "var" / "log").rglob("*"):  # dpkg's and apt's logs of this build
        if log.is_file():
            log.unlink()


def role_tree(rootfs: Path, wheel: Path, image: Image, target: Path) -> None:
    """`target`: what `image` adds to the base, /opt/mlsysops and its writable directories.
    The venv is made inside `rootfs` (its python3, at the path its scripts name) and moved out."""
    venv = rootfs / VENV.lstrip("/")
    install_venv(rootfs, wheel, (image.extra,))
    chroot = ["chroot", str(rootfs), f"{VENV}/bin/python"]
    subprocess.run([*chroot, "-m", "pip", "uninstall", "--yes", "--quiet", "pip"], check=True, timeout=120)
    subprocess.run(
        [*chroot, "-m", "compileall", "-q", "-j0", f"{VENV}/lib/{PYTHON_MINOR}/site-packages"],
        check=True,
        timeout=600,
    )
    (target / "opt").mkdir(parents=True)
    shutil.move(venv, target / "opt")
    for directory in image.writable:
        path = target / directory.lstrip("/")
        path.mkdir(parents=True)
        if not image.root:
            path.chmod(0o750)
            shutil.chown(path, UID, GID)


def configure(layout: Path, image: Image, tag: str, revision: str, created: str) -> None:
    """The OCI config of `image`, as a new tag on the base: entrypoint, user, ports, labels."""
    labels = {
        "org.opencontainers.image.title": f"mlsysops-{image.name}",
        "org.opencontainers.image.description": image.description,
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0",
        "org.opencontainers.image.base.name": "debian:bookworm (mmdebstrap --variant=essential)",
    }
    _umoci(
        "config",
        "--image",
        f"{layout}:base",
        "--tag",
        image.name,
        "--created",
        created,
        f"--config.entrypoint={VENV}/bin/{image.program}",
        *(f"--config.cmd={arg}" for arg in image.cmd),
        f"--config.user={image.user}",
        "--config.workingdir=/",
        "--config.stopsignal=SIGTERM",
        f"--config.env=PATH={PATH}",
        "--config.env=PYTHONUNBUFFERED=1",
        "--config.env=PYTHONDONTWRITEBYTECODE=1",
        *(f"--config.exposedports={port}" for port in image.ports),
        *(f"--config.label={key}={value}" for key, value in labels.items()),
        "--history.created_by=deploy/images/build_images.py: OCI config",
    )


def _blob(layout: Path, digest: str) -> Path:
    return layout / "blobs" / digest.replace(":", "/", 1)


def export_tarball(layout: Path, image: Image, tag: str, path: Path) -> dict[str, Any]:
    """An OCI layout tarball holding only `image` (its manifest, config and layers), its
    index naming the image by its full reference; the sizes it holds."""
    index = json.loads((layout / "index.json").read_text(encoding="utf-8"))
    descriptor = next(
        d for d in index["manifests"] if d["annotations"]["org.opencontainers.image.ref.name"] == image.name
    )
    manifest = json.loads(_blob(layout, descriptor["digest"]).read_text(encoding="utf-8"))
    blobs = [
        descriptor["digest"],
        manifest["config"]["digest"],
        *(layer["digest"] for layer in manifest["layers"]),
    ]
    own = {**descriptor, "annotations": {"org.opencontainers.image.ref.name": reference(image, tag)}}
    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp)
        (staged / "oci-layout").write_text('{"imageLayoutVersion":"1.0.0"}', encoding="utf-8")
        (staged / "index.json").write_text(
            json.dumps({"schemaVersion": 2, "manifests": [own]}), encoding="utf-8"
        )
        with tarfile.open(path, "w") as tar:
            tar.add(staged / "oci-layout", "oci-layout")
            tar.add(staged / "index.json", "index.json")
            for digest in blobs:
                tar.add(_blob(layout, digest), f"blobs/{digest.replace(':', '/', 1)}")
    return {
        "ref": reference(image, tag),
        "tarball_bytes": path.stat().st_size,
        "layers_bytes": [layer["size"] for layer in manifest["layers"]],
    }


def build_images(out: Path, workdir: Path) -> dict[str, Any]:
    """Every image of IMAGES into `out` (layout and tarballs); build times and sizes."""
    tag, created = version(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    revision = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True)
    started = time.monotonic()
    rootfs = workdir / "rootfs"
    base_rootfs(rootfs)
    rootfs.chmod(0o755)  # the layer's "/"
    timings = {"rootfs_s": round(time.monotonic() - started, 1)}
    layout = out / "layout"
    shutil.rmtree(layout, ignore_errors=True)
    _umoci("init", "--layout", str(layout))
    _umoci("new", "--image", f"{layout}:base")
    _umoci(
        "insert",
        "--image",
        f"{layout}:base",
        "--history.created_by=mmdebstrap essential + python3",
        str(rootfs),
        "/",
    )
    wheel = build_wheel(workdir)
    sizes = {}
    for image in IMAGES:
        begun = time.monotonic()
        tree = workdir / image.name
        role_tree(rootfs, wheel, image, tree)
        configure(layout, image, tag, revision.stdout.strip(), created)
        _umoci(
            "insert",
            "--image",
            f"{layout}:{image.name}",
            f"--history.created_by=/opt/mlsysops [{image.extra}]",
            str(tree),
            "/",
        )
        sizes[image.name] = export_tarball(layout, image, tag, out / f"mlsysops-{image.name}.oci.tar")
        timings[f"{image.name}_s"] = round(time.monotonic() - begun, 1)
    _umoci("rm", "--image", f"{layout}:base")
    _umoci("gc", "--layout", str(layout))
    timings["total_s"] = round(time.monotonic() - started, 1)
    return {"bench": "images", **timings, "images": sizes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out", type=Path, default=REPO / "build" / "images", help="where the layout and tarballs go"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlsysops-images-") as tmp:
        report = build_images(args.out.resolve(), Path(tmp))
    for name, size in report["images"].items():
        print(
            f"{size['ref']}: {size['tarball_bytes'] / 1e6:.1f} MB ({args.out / f'mlsysops-{name}.oci.tar'})"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
