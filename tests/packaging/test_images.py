"""The daemons' container images (deploy/images/build_images.py): built once for the module (mmdebstrap,
the project installed offline, packed by umoci), their OCI configs read back from the layout's
JSON, and the far-edge bridge's image run under a private containerd with runc: imported by the
node agent's own image import (as the demo's busybox image), started by `ctr run` from the
image's config (entrypoint, user) in a network namespace made here, and checked through what it
serves: its control socket on a bind-mounted directory answers `{"op":"list"}`, its metrics
answer inside that namespace, it runs as the image's user, and it stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsysops.testing import wait_for

sys.path.insert(0, str(Path(__file__).parents[2] / "deploy" / "images"))
sys.path.insert(0, str(Path(__file__).parents[1] / "nodeagent" / "runtimes"))
from build_images import IMAGES, REPO, UID, VENV, Image, build_images, reference, version
from privated import PrivateContainerd, remove_cgroups

from nodeagent.host.containerd import ContainerdClient
from nodeagent.host.ocitar import read_tarball

NAMESPACE = "mlsysops-images"
TOOLS = ("mmdebstrap", "umoci", "chroot", "ip", "/usr/bin/containerd", "/usr/bin/ctr", "runc")
SCRAPE = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9465/metrics').read().decode())"
BRIDGE_CONFIG = """\
state_dir: /var/lib/mlsysops/faredge
control_socket: /run/mlsysops-faredge/faredge.sock
metrics:
  listen: "127.0.0.1:9465"
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict[str, Any]]]:
    """The three images, built once (about 80 s here, most of it the rootfs); removed afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mmdebstrap, chroot and containerd need root")
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (.ci/setup installs them)")
    base = tmp_path_factory.mktemp("images")
    out = base / "out"
    out.mkdir()
    report = build_images(out, base)
    print(json.dumps(report))
    yield out, report
    shutil.rmtree(base)


def image_config(tarball: Path) -> tuple[str, dict[str, Any]]:
    """The reference the tarball's index names, and the image's OCI config, read from its JSON."""
    with tarfile.open(tarball) as tar:

        def blob(digest: str) -> Any:
            member = tar.extractfile(f"blobs/{digest.replace(':', '/', 1)}")
            assert member is not None
            return json.load(member)

        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        [descriptor] = index["manifests"]
        manifest = blob(descriptor["digest"])
        ref = descriptor["annotations"]["org.opencontainers.image.ref.name"]
        return ref, blob(manifest["config"]["digest"])


def manifest_images() -> set[str]:
    """Every container image deploy/kubernetes/base names."""
    names = set()
    for path in (REPO / "deploy" / "kubernetes" / "base").rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            spec = (doc or {}).get("spec", {}).get("template", {}).get("spec", {})
            names |= {c["image"] for c in (*spec.get("initContainers", []), *spec.get("containers", []))}
    return names


@pytest.mark.parametrize("image", IMAGES, ids=[i.name for i in IMAGES])
def test_oci_config(built: tuple[Path, dict[str, Any]], image: Image) -> None:
    out, report = built
    ref, config = image_config(out / f"mlsysops-{image.name}.oci.tar")
    assert ref == reference(image, version())
    assert ref in manifest_images(), "the Kustomize base names another image"
    assert report["images"][image.name]["ref"] == ref
    settings = config["config"]
    assert settings["Entrypoint"] == [f"{VENV}/bin/{image.program}"]
    assert settings["Cmd"] == ["--config", image.config]
    assert settings["User"] == ("0:0" if image.name == "nodeagent" else f"{UID}:{UID}")
    assert sorted(settings.get("ExposedPorts", {})) == sorted(image.ports)
    labels = settings["Labels"]
    assert labels["org.opencontainers.image.title"] == f"mlsysops-{image.name}"
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert len(config["rootfs"]["diff_ids"]) == 2  # the shared base, then /opt/mlsysops
    # umoci, which packed them, lists every tag of the layout
    tags = subprocess.run(["umoci", "ls", "--layout", str(out / "layout")], capture_output=True, text=True)
    assert image.name in tags.stdout.split()


def test_images_share_the_base_layer(built: tuple[Path, dict[str, Any]]) -> None:
    _, report = built
    bases = {report["images"][i.name]["layers_bytes"][0] for i in IMAGES}
    assert len(bases) == 1


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"mlsysops-img-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[PrivateContainerd]:
    daemon = PrivateContainerd(tmp_path / "containerd")
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.destroy([NAMESPACE])
        remove_cgroups(NAMESPACE)


def ask(path: Path, request: dict[str, Any]) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        sock.sendall(json.dumps(request).encode() + b"\n")
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = sock.recv(65536)
            assert chunk, "the bridge hung up"
            reply += chunk
    return dict(json.loads(reply))


def test_bridge_image_runs_under_containerd(
    built: tuple[Path, dict[str, Any]], containerd: PrivateContainerd, netns: str, tmp_path: Path
) -> None:
    out, _ = built
    bridge = next(i for i in IMAGES if i.name == "faredge")
    ref = reference(bridge, version())
    client = ContainerdClient(containerd.address, NAMESPACE)
    try:
        client.ensure_namespace()
        client.import_image(read_tarball(out / "mlsysops-faredge.oci.tar"), ref)
    finally:
        client.close()
    config, control = tmp_path / "etc", tmp_path / "control"
    config.mkdir()
    (config / "faredge.yaml").write_text(BRIDGE_CONFIG, encoding="utf-8")
    control.mkdir()
    shutil.chown(control, UID, UID)  # the image's user makes its socket there
    containerd.ctr(
        "run", "--detach", "--runtime", "io.containerd.runc.v2",
        "--with-ns", f"network:/run/netns/{netns}",
        "--mount", f"type=bind,src={config},dst=/etc/mlsysops,options=rbind:ro",
        "--mount", f"type=bind,src={control},dst=/run/mlsysops-faredge,options=rbind:rw",
        ref, "bridge", namespace=NAMESPACE,
    )  # fmt: skip
    sock = control / "faredge.sock"
    try:
        wait_for(sock.exists, timeout=30)
        assert ask(sock, {"op": "list"}) == {"ok": True, "devices": []}
        pid = int(containerd.ctr("task", "ls", namespace=NAMESPACE).stdout.split()[-2])
        status = Path(f"/proc/{pid}/status").read_text().splitlines()
        assert next(line for line in status if line.startswith("Uid:")).split()[1:] == [str(UID)] * 4
        assert os.stat(f"/proc/{pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
        metrics = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", SCRAPE],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert metrics.returncode == 0, metrics.stderr
        assert "faredge" in metrics.stdout
        containerd.ctr("task", "kill", "--signal", "SIGTERM", "bridge", namespace=NAMESPACE)
        deadline = time.monotonic() + 20
        while "STOPPED" not in containerd.ctr("task", "ls", namespace=NAMESPACE).stdout:
            assert time.monotonic() < deadline, "the bridge did not stop on SIGTERM"
            time.sleep(0.1)
        client = ContainerdClient(containerd.address, NAMESPACE)
        try:
            task = client.task("bridge")
        finally:
            client.close()
        assert task is not None and task.exit_status == 0
    finally:
        containerd.ctr("task", "rm", "--force", "bridge", namespace=NAMESPACE, check=False)
        containerd.ctr("container", "rm", "bridge", namespace=NAMESPACE, check=False)
