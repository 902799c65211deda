"""The private containerd and the busybox image, reused from the repository's test support
(tests/nodeagent/runtimes: privated.py, ociimage.py) as demo/ and bench/ reuse them: one copy of
how to run a throwaway containerd. Works from a checkout of the repository only."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
CHAIN_LABEL = "mlsysops.eu/chain-id"  # nodeagent.host.containerd.CHAIN_LABEL
SUPPORT = REPO / "tests" / "nodeagent" / "runtimes"


def _support() -> None:
    if not (SUPPORT / "privated.py").exists():
        raise RuntimeError(f"the experiment runs from a repository checkout ({SUPPORT} is missing)")
    if str(SUPPORT) not in sys.path:
        sys.path.insert(0, str(SUPPORT))


def private_containerd(base: Path) -> Any:
    """A PrivateContainerd (not started) with its own root, state, socket and config."""
    _support()
    from privated import PrivateContainerd  # type: ignore[import-not-found,unused-ignore]

    daemon = PrivateContainerd(base)
    daemon.write_config()
    return daemon


def write_image(path: Path, ref: str) -> Path:
    _support()
    from ociimage import write_oci_tarball  # type: ignore[import-not-found,unused-ignore]

    return Path(write_oci_tarball(path, ref))


def import_image(daemon: Any, tarball: Path, ref: str, namespace: str) -> None:
    """`ctr images import`, then the label the node agent finds an image's unpacked snapshot by
    (mlsysops.eu/chain-id: for this one-layer image, the layer's diff id)."""
    _support()
    from ociimage import busybox_layer  # type: ignore[import-not-found,unused-ignore]

    chain = "sha256:" + hashlib.sha256(busybox_layer()).hexdigest()
    daemon.ctr("images", "import", str(tarball), namespace=namespace)
    daemon.ctr("images", "label", ref, f"{CHAIN_LABEL}={chain}", namespace=namespace)


def remove_cgroups(root: str) -> None:
    _support()
    from privated import remove_cgroups as remove  # type: ignore[import-not-found,unused-ignore]

    remove(root)
