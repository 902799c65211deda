"""The daemons' container images (deploy/images/build_images.py): built once for the module (mmdebstrap,
the project installed offline, packed by umoci), their OCI configs read back from the layout's
JSON, and the far-edge bridge's and the API's images run under a private containerd with runc:
imported by the node agent's own image import (as the demo's busybox image), started by `ctr
run` from the image's config (entrypoint, user) in a network namespace made here, and checked
through what they serve: the bridge's control socket on a bind-mounted directory answers
`{"op":"list"}` and its metrics answer inside that namespace; the API (with the controller
in-process) answers /manage/ping there to a viewer's token. Each runs as the image's user in
that namespace and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlsysops.testing import wait_for

sys.path.insert(0, str(Path(__file__).parents[2] / "deploy" / "images"))
sys.path.insert(0, str(Path(__file__).parents[1] / "nodeagent" / "runtimes"))
from build_images import IMAGES, REPO, UID, VENV, Image, build_images, reference, version
from privated import PrivateContainerd, remove_cgroups

from controller.api.context import ApiSettings
from controller.api.model_deployments import server_command
from mlconnector import features, training
from mlconnector.registry import MlflowRegistry
from nodeagent.host.containerd import ContainerdClient
from nodeagent.host.ocitar import read_tarball

# The module's first test also waits for the build (80 s here when idle, three minutes on a busy machine).
pytestmark = pytest.mark.timeout(600)
NAMESPACE = "mlsysops-images"
TOOLS = ("mmdebstrap", "umoci", "chroot", "ip", "/usr/bin/containerd", "/usr/bin/ctr", "runc")
SCRAPE = "import urllib.request as u; print(u.urlopen('http://127.0.0.1:9465/metrics').read().decode())"
PING = """\
import urllib.request as u
request = u.Request("http://127.0.0.1:8000/manage/ping", headers={"Authorization": "Bearer TOKEN"})
print(u.urlopen(request, timeout=5).read().decode())
"""
API_CONFIG = """\
listen: "127.0.0.1:8000"
tokens_file: /etc/mlsysops/tokens.json
store_path: /var/lib/mlsysops/api/controller.db
policy_state: /var/lib/mlsysops/api/policies.json
run_controller: true
"""
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
    if image.name == "modelserver":  # /ml/deploy_ml's components name it, not the Kustomize base
        assert ref == ApiSettings.model_server_image
    else:
        assert ref in manifest_images(), "the Kustomize base names another image"
    assert report["images"][image.name]["ref"] == ref
    settings = config["config"]
    assert settings["Entrypoint"] == [f"{VENV}/bin/{image.program}"]
    assert settings["Cmd"] == list(image.cmd)
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


@pytest.fixture(scope="module")
def containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateContainerd]:
    """One for the module: the images' shared base layer is imported and unpacked once."""
    daemon = PrivateContainerd(tmp_path_factory.mktemp("containerd"))
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


@contextmanager
def running(
    containerd: PrivateContainerd,
    out: Path,
    name: str,
    netns: str,
    mounts: dict[str, Path],
    command: Sequence[str] = (),
) -> Iterator[int]:
    """The image `name` imported (the node agent's import) and run by `ctr run` with runc from its
    own config (or `command` instead of its entrypoint and Cmd), in `netns`, with `mounts`
    (container path: host directory) bound; its pid while it runs as the image's user there, then
    stopped by SIGTERM, which it must exit 0 on."""
    image = next(i for i in IMAGES if i.name == name)
    ref = reference(image, version())
    client = ContainerdClient(containerd.address, NAMESPACE)
    try:
        client.ensure_namespace()
        client.import_image(read_tarball(out / f"mlsysops-{name}.oci.tar"), ref)
        binds = [f"--mount=type=bind,src={src},dst={dst},options=rbind:rw" for dst, src in mounts.items()]
        containerd.ctr(
            "run", "--detach", "--runtime", "io.containerd.runc.v2",
            "--with-ns", f"network:/run/netns/{netns}", *binds, ref, name, *command, namespace=NAMESPACE,
        )  # fmt: skip
        try:
            task = wait_for(lambda: client.task(name), timeout=10, what="the task")
            status = Path(f"/proc/{task.pid}/status").read_text().splitlines()
            uid = next(line for line in status if line.startswith("Uid:")).split()[1:]
            assert uid == [image.user.split(":")[0]] * 4, "not the image's user"
            assert os.stat(f"/proc/{task.pid}/ns/net").st_ino == os.stat(f"/run/netns/{netns}").st_ino
            yield task.pid
            containerd.ctr("task", "kill", "--signal", "SIGTERM", name, namespace=NAMESPACE)
            stopped = wait_for(
                lambda: (t := client.task(name)) is not None and t.status == "stopped" and t, timeout=20,
                what=f"{name} to stop on SIGTERM",
            )  # fmt: skip
            assert stopped.exit_status == 0
        finally:
            containerd.ctr("task", "rm", "--force", name, namespace=NAMESPACE, check=False)
            containerd.ctr("container", "rm", name, namespace=NAMESPACE, check=False)
    finally:
        client.close()


def in_netns(netns: str, code: str) -> str:
    """What `code` prints, run by this Python inside `netns`."""
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", code], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def owned_dir(path: Path) -> Path:
    """A directory for the images' user (10001) to write in."""
    path.mkdir()
    shutil.chown(path, UID, UID)
    return path


def test_bridge_image_runs_under_containerd(
    built: tuple[Path, dict[str, Any]], containerd: PrivateContainerd, netns: str, tmp_path: Path
) -> None:
    config, control = owned_dir(tmp_path / "etc"), owned_dir(tmp_path / "control")
    (config / "faredge.yaml").write_text(BRIDGE_CONFIG, encoding="utf-8")
    mounts = {"/etc/mlsysops": config, "/run/mlsysops-faredge": control}
    with running(containerd, built[0], "faredge", netns, mounts):
        sock = control / "faredge.sock"
        wait_for(sock.exists, timeout=30, what="the bridge's control socket")
        assert ask(sock, {"op": "list"}) == {"ok": True, "devices": []}
        assert "faredge" in in_netns(netns, SCRAPE)


def test_api_image_runs_under_containerd(
    built: tuple[Path, dict[str, Any]], containerd: PrivateContainerd, netns: str, tmp_path: Path
) -> None:
    """The API with the controller in-process (the controller image's larger dependency set)."""
    config = owned_dir(tmp_path / "etc")
    token = subprocess.run(
        [str(Path(sys.executable).parent / "mlsysops"), "api", "token",
         "--tokens-file", str(config / "tokens.json"), "create", "--role", "viewer", "--name", "test"],
        check=True, capture_output=True, text=True,
    ).stdout.split()[0]  # fmt: skip
    shutil.chown(config / "tokens.json", UID, UID)
    (config / "api.yaml").write_text(API_CONFIG, encoding="utf-8")
    with running(containerd, built[0], "controller", netns, {"/etc/mlsysops": config}):
        ping = PING.replace("TOKEN", token)
        answer = wait_for(lambda: _answer(netns, ping), timeout=60, what="/manage/ping", interval=0.5)
        assert json.loads(answer)["message"] == "Agent Alive"


def _answer(netns: str, code: str) -> str:
    try:
        return in_netns(netns, code)
    except AssertionError:
        return ""  # not listening yet


def test_model_server_image_serves_a_registered_model_under_containerd(
    built: tuple[Path, dict[str, Any]], containerd: PrivateContainerd, netns: str, tmp_path: Path
) -> None:
    """What /ml/deploy_ml's component runs (its command, the image's python and ml extra) on a
    registry directory: the champion it serves predicts what the registry's own model does."""
    sys.path.insert(0, str(REPO / "tests" / "mlconnector" / "api"))
    from grid import write_grid

    models = owned_dir(tmp_path / "models")  # mounted at the same path: MLflow keeps absolute artifact URIs
    registry = MlflowRegistry.embedded(models)
    data = features.load_dataset(write_grid(tmp_path / "grid.csv"))
    trained = training.fit(data, training.LATENCY_SIGNATURE)
    version = registry.register(
        "latency_p95_ms", trained.estimator, training.LATENCY_SIGNATURE, metrics={}, lineage=data.lineage()
    )
    registry.promote("latency_p95_ms", version.version)
    subprocess.run(["chown", "-R", f"{UID}:{UID}", str(models)], check=True)
    row = {"cpu_quota_cores": 1.0, "cpus": 2, "runtime_gvisor": 0, "offered_rps": 120.0}
    expected = registry.load("latency_p95_ms", "champion").predict([row])[0]
    command = server_command(str(models), "latency_p95_ms", "champion", 8080)
    predict = f"""\
import json, urllib.request as u
body = json.dumps({{"rows": [{json.dumps(row)}]}}).encode()
headers = {{"Content-Type": "application/json"}}
request = u.Request("http://127.0.0.1:8080/v1/predict", data=body, headers=headers)
print(u.urlopen(request, timeout=10).read().decode())
"""
    with running(containerd, built[0], "modelserver", netns, {str(models): models}, command):
        answer = json.loads(
            wait_for(lambda: _answer(netns, predict), timeout=90, what="/v1/predict", interval=0.5)
        )
    assert answer["model"] == f"latency_p95_ms/{version.version}"
    assert abs(answer["predictions"][0] - expected) <= 1e-6 * max(1.0, abs(expected))
