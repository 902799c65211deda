"""A small test image, built without a registry: Debian's static busybox as one uncompressed layer,
written as an OCI image layout tarball (what `mlsysops node run --image-tarball` and `ctr import` read)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh",
    "cat",
    "echo",
    "sleep",
    "true",
    "false",
    "uname",
    "dmesg",
    "ls",
    "grep",
    "wget",
    "nc",
    "touch",
    "date",
    "head",
    "mount",
)


def _add(
    tar: tarfile.TarFile,
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    mode: int = 0o644,
    link: str = "",
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime, info.linkname = kind, mode, 0, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def busybox_layer() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in ("bin", "proc", "dev", "sys", "tmp", "etc", "data", "run"):
            _add(tar, d, kind=tarfile.DIRTYPE, mode=0o755)
        _add(tar, "bin/busybox", BUSYBOX.read_bytes(), mode=0o755)
        for applet in APPLETS:
            _add(tar, f"bin/{applet}", kind=tarfile.SYMTYPE, link="busybox", mode=0o777)
        _add(tar, "etc/passwd", b"root:x:0:0:root:/:/bin/sh\n")
    return out.getvalue()


def _blob(tar: tarfile.TarFile, data: bytes) -> dict[str, object]:
    digest = hashlib.sha256(data).hexdigest()
    _add(tar, f"blobs/sha256/{digest}", data)
    return {"digest": f"sha256:{digest}", "size": len(data)}


def write_oci_tarball(path: Path, ref: str = "mlsysops.test/busybox:1") -> Path:
    layer = busybox_layer()
    diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Env": ["PATH=/bin"], "Cmd": ["/bin/sh"]},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        }
    ).encode()
    with tarfile.open(path, "w") as tar:
        _add(tar, "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        for d in ("blobs", "blobs/sha256"):
            _add(tar, d, kind=tarfile.DIRTYPE, mode=0o755)
        layer_desc = {"mediaType": "application/vnd.oci.image.layer.v1.tar", **_blob(tar, layer)}
        config_desc = {"mediaType": "application/vnd.oci.image.config.v1+json", **_blob(tar, config)}
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": config_desc,
                "layers": [layer_desc],
            }
        ).encode()
        manifest_desc = {
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            **_blob(tar, manifest),
            "annotations": {"org.opencontainers.image.ref.name": ref},
        }
        _add(tar, "index.json", json.dumps({"schemaVersion": 2, "manifests": [manifest_desc]}).encode())
    return path
