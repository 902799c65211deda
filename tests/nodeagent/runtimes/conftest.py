"""A private containerd for this test session (own root, state, socket, config importing the
agent's drop-in with runc, runsc behind its wrapper, crun and Kata), a busybox test image as an
OCI tarball, and the agent's workload service on them. Everything is removed at the end."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from agentproc import IMAGE, NAMESPACE, Agent
from ociimage import write_oci_tarball
from privated import PrivateContainerd, remove_cgroups

from nodeagent.host.containerd import ContainerdClient
from nodeagent.host.ocitar import read_tarball
from nodeagent.mechanisms.runtime_handlers import standard_handlers
from nodeagent.service.events import EventBus
from nodeagent.service.runtime_handlers import HandlerCatalog
from nodeagent.service.workloads import WorkloadService, WorkloadSettings


def _skip_unless_ready() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (containerd)")
    for binary in ("/usr/bin/containerd", "/usr/bin/ctr", "/usr/bin/runsc", "/bin/busybox"):
        if not os.path.exists(binary):
            pytest.skip(f"{binary} is not installed (.ci/setup installs it)")


@pytest.fixture(scope="session")
def containerd() -> Iterator[PrivateContainerd]:
    _skip_unless_ready()
    daemon = PrivateContainerd(Path(tempfile.mkdtemp(prefix="mlsysops-ctd-")))
    daemon.write_config()
    catalog = make_catalog(daemon)
    catalog.ensure_dropin(restart=None)  # before the first start: containerd reads it then
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.destroy([NAMESPACE, "default"])
        remove_cgroups(NAMESPACE)


def make_catalog(daemon: PrivateContainerd) -> HandlerCatalog:
    wrapper = daemon.base / "runsc-wrapper"
    return HandlerCatalog(
        config_path=daemon.config,
        dropin_path=daemon.dropin_dir / "mlsysops-runtimes.toml",
        wrapper_path=wrapper,
        wanted=standard_handlers(str(wrapper)),
    )


@pytest.fixture(scope="session")
def image_tar(containerd: PrivateContainerd) -> Path:
    return write_oci_tarball(containerd.base / "busybox-oci.tar", IMAGE)


def make_service(
    daemon: PrivateContainerd,
    *,
    restart_containerd: Callable[[], None] | None = None,
    events: EventBus | None = None,
    **overrides: object,
) -> WorkloadService:
    settings = WorkloadSettings(
        namespace=NAMESPACE,
        log_dir=daemon.base / "logs",
        allowed_mount_roots=(str(daemon.base / "data"),),
        cgroup_root=NAMESPACE,
        probe_image=IMAGE,
        **overrides,  # type: ignore[arg-type]
    )
    client = ContainerdClient(daemon.address, NAMESPACE)
    return WorkloadService(
        client, make_catalog(daemon), settings, events, restart_containerd=restart_containerd
    )


@pytest.fixture(scope="session")
def service(containerd: PrivateContainerd, image_tar: Path) -> Iterator[WorkloadService]:
    svc = make_service(containerd)
    svc.client.ensure_namespace()
    svc.client.import_image(read_tarball(image_tar), IMAGE)
    (containerd.base / "data").mkdir(exist_ok=True)
    svc.discover()
    yield svc
    for status in svc.workloads():
        svc.stop(status.spec.name)
    svc.client.close()


@pytest.fixture
def workload_name(request: pytest.FixtureRequest, service: WorkloadService) -> Iterator[str]:
    """A fresh workload name, removed after the test whatever happened."""
    name = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[-40:].strip("-")
    yield name
    with contextlib.suppress(Exception):  # most tests stop it themselves
        service.stop(name)
    shutil.rmtree(service.settings.log_dir / name, ignore_errors=True)


@pytest.fixture
def agent(containerd: PrivateContainerd, service: WorkloadService, tmp_path: Path) -> Iterator[Agent]:
    running = Agent(containerd, tmp_path)
    running.start()
    yield running
    running.stop()
    for status in service.workloads():
        if status.spec.name.startswith(("cli-", "shop.")):
            service.stop(status.spec.name)
