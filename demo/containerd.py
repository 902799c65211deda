"""A private containerd for the demo's live loop: its own root, state, socket and config (never
the host's containerd), the agent's runtime-handler drop-in written before it starts (runc, and
gVisor's runsc behind the agent's wrapper), and the busybox image imported from an OCI tarball
built locally (no registry). Everything it created is removed on exit, tasks first.

The daemon and the image builder are the test suite's (tests/nodeagent/runtimes), as in
bench/runtimes.py: one copy of how to run a throwaway containerd.
"""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

REPO = Path(__file__).resolve().parents[1]
IMAGE = "mlsysops.demo/busybox:1"
BINARIES = ("/usr/bin/containerd", "/usr/bin/runsc", "/bin/busybox")


@dataclass(frozen=True)
class Runtime:
    daemon: Any  # the running PrivateContainerd (tests/nodeagent/runtimes/privated.py)
    namespace: str
    image: str
    agent_config: str  # the node agent's `runtimes:` section for this containerd


@contextmanager
def private_containerd(workdir: Path, namespace: str, image: str = IMAGE) -> Iterator[Runtime]:
    """A running private containerd holding `image`; removed with its tasks on exit."""
    missing = [b for b in BINARIES if not os.path.exists(b)]
    if missing:
        raise click.ClickException(f"the live loop needs {', '.join(missing)} (make setup installs them)")
    sys.path.insert(0, str(REPO / "tests" / "nodeagent" / "runtimes"))
    from ociimage import write_oci_tarball  # type: ignore[import-not-found]
    from privated import PrivateContainerd, remove_cgroups  # type: ignore[import-not-found]

    from nodeagent.host.containerd import ContainerdClient
    from nodeagent.host.ocitar import read_tarball
    from nodeagent.mechanisms.runtime_handlers import standard_handlers
    from nodeagent.service.runtime_handlers import HandlerCatalog

    daemon = PrivateContainerd(workdir)
    daemon.write_config()
    wrapper = daemon.base / "runsc-wrapper"
    dropin = daemon.dropin_dir / "mlsysops-runtimes.toml"
    HandlerCatalog(
        config_path=daemon.config,
        dropin_path=dropin,
        wrapper_path=wrapper,
        wanted=standard_handlers(str(wrapper)),
    ).ensure_dropin(restart=None)  # before the start: containerd reads its drop-ins then
    try:
        daemon.start()
        client = ContainerdClient(daemon.address, namespace)
        try:
            client.ensure_namespace()
            client.import_image(read_tarball(write_oci_tarball(workdir / "busybox-oci.tar", image)), image)
        finally:
            client.close()
        section = textwrap.dedent(
            f"""\
            runtimes:
              enabled: true
              containerd_socket: {daemon.address}
              containerd_config: {daemon.config}
              dropin: {dropin}
              runsc_wrapper: {wrapper}
              namespace: {namespace}
              probe_image: {image}
            """
        )
        yield Runtime(daemon, namespace, image, section)
    finally:
        daemon.destroy([namespace])
        remove_cgroups(namespace)
