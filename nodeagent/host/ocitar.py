"""Read an image tarball: an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`) or a
`docker save` archive (`manifest.json`, layer tars), as the blobs containerd's content store needs.

Nothing is unpacked to disk: blobs are streamed from the tar when they are written. Every
malformed input is an InvalidSpec naming the field `image_tarball` and what is wrong, before
anything is written to containerd.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from nodeagent.errors import InvalidSpec

FIELD = "image_tarball"
MANIFEST_V2 = "application/vnd.oci.image.manifest.v1+json"
CONFIG_V1 = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MANIFEST_TYPES = (MANIFEST_V2, DOCKER_MANIFEST)
MAX_JSON = 4 << 20


@dataclass(frozen=True)
class Blob:
    """One blob of the image: where it is in the tar, and what the content store will know it as."""

    digest: str
    size: int
    media_type: str
    member: str  # name inside the tarball ("" when the bytes are in `data`)
    data: bytes = b""


@dataclass(frozen=True)
class TarImage:
    """What an image tarball holds: its manifest, config and layers (in order), and their diff ids."""

    path: Path
    manifest: Blob
    config: Blob
    layers: tuple[Blob, ...]
    diff_ids: tuple[str, ...]
    ref_name: str  # the reference the tarball names (annotation or RepoTags), "" when none

    def blobs(self) -> tuple[Blob, ...]:
        return (*self.layers, self.config, self.manifest)


def read_tarball(path: Path) -> TarImage:
    """The image in the tarball at `path`; InvalidSpec(image_tarball, reason) when it is not one."""
    try:
        with tarfile.open(path) as tar:
            names = {m.name.lstrip("./"): m for m in tar.getmembers() if m.isfile()}
            if "index.json" in names:
                return _oci_layout(path, tar, names)
            if "manifest.json" in names:
                return _docker_save(path, tar, names)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise InvalidSpec(FIELD, f"{path}: not a readable tar archive ({exc})") from None
    raise InvalidSpec(FIELD, f"{path}: neither an OCI layout (index.json) nor a docker save (manifest.json)")


def open_blob(image: TarImage, blob: Blob) -> Iterator[bytes]:
    """The bytes of `blob` in chunks (from the tar, or held in memory for generated blobs)."""
    if not blob.member:
        yield blob.data
        return
    with tarfile.open(image.path) as tar:
        handle = tar.extractfile(blob.member)
        if handle is None:
            raise InvalidSpec(FIELD, f"{blob.member}: missing from the tarball")
        with handle:
            while chunk := handle.read(1 << 20):
                yield chunk


def _oci_layout(path: Path, tar: tarfile.TarFile, names: dict[str, tarfile.TarInfo]) -> TarImage:
    index = _json(tar, names, "index.json")
    manifests = _list(index, "manifests", "index.json")
    entries = [m for m in manifests if isinstance(m, dict) and m.get("mediaType") in MANIFEST_TYPES]
    if not entries:
        raise InvalidSpec(FIELD, f"{path}: index.json lists no image manifest")
    entry = entries[0]
    manifest_blob = _blob_ref(entry, "index.json manifests[0]", names)
    manifest = _json(tar, names, manifest_blob.member, manifest_blob.digest)
    config = _blob_ref(_dict(manifest, "config", "manifest"), "manifest.config", names)
    layers = tuple(
        _blob_ref(layer, f"manifest.layers[{i}]", names)
        for i, layer in enumerate(_list(manifest, "layers", "manifest"))
    )
    annotations = entry.get("annotations") or {}
    ref = annotations.get("org.opencontainers.image.ref.name", "") if isinstance(annotations, dict) else ""
    return _image(path, tar, names, manifest_blob, config, layers, str(ref))


def _docker_save(path: Path, tar: tarfile.TarFile, names: dict[str, tarfile.TarInfo]) -> TarImage:
    """A docker save archive has no OCI manifest: one is made from its manifest.json."""
    entries = _json(tar, names, "manifest.json")
    if not isinstance(entries, list) or not entries or not isinstance(entries[0], dict):
        raise InvalidSpec(FIELD, f"{path}: manifest.json is not a list of images")
    entry = entries[0]
    config = _member_blob(tar, names, str(entry.get("Config", "")), CONFIG_V1, "manifest.json Config")
    layers = tuple(
        _member_blob(tar, names, str(layer), LAYER_TAR, f"manifest.json Layers[{i}]")
        for i, layer in enumerate(entry.get("Layers") or ())
    )
    manifest_doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_V2,
        "config": _descriptor(config),
        "layers": [_descriptor(layer) for layer in layers],
    }
    data = json.dumps(manifest_doc, separators=(",", ":")).encode()
    manifest = Blob(_sha256(data), len(data), MANIFEST_V2, "", data)
    tags = entry.get("RepoTags") or []
    return _image(path, tar, names, manifest, config, layers, str(tags[0]) if tags else "")


def _image(
    path: Path,
    tar: tarfile.TarFile,
    names: dict[str, tarfile.TarInfo],
    manifest: Blob,
    config: Blob,
    layers: tuple[Blob, ...],
    ref: str,
) -> TarImage:
    config_doc = _json(tar, names, config.member, config.digest)
    diff_ids = tuple(
        str(d) for d in _list(_dict(config_doc, "rootfs", "config"), "diff_ids", "config.rootfs")
    )
    if len(diff_ids) != len(layers):
        raise InvalidSpec(FIELD, f"{path}: {len(layers)} layers but {len(diff_ids)} diff_ids in the config")
    if not layers:
        raise InvalidSpec(FIELD, f"{path}: the image has no layers")
    return TarImage(path, manifest, config, layers, diff_ids, ref)


def _blob_ref(desc: Any, where: str, names: dict[str, tarfile.TarInfo]) -> Blob:
    if not isinstance(desc, dict):
        raise InvalidSpec(FIELD, f"{where}: not a descriptor")
    digest, size, media = desc.get("digest"), desc.get("size"), desc.get("mediaType", "")
    if not isinstance(digest, str) or not digest.startswith("sha256:") or len(digest) != 71:
        raise InvalidSpec(FIELD, f"{where}.digest: {digest!r} is not a sha256 digest")
    if not isinstance(size, int) or size < 0:
        raise InvalidSpec(FIELD, f"{where}.size: {size!r} is not a size")
    member = f"blobs/sha256/{digest[7:]}"
    info = names.get(member)
    if info is None:
        raise InvalidSpec(FIELD, f"{where}: blob {digest} is missing from the tarball")
    if info.size != size:
        raise InvalidSpec(FIELD, f"{where}: blob {digest} has {info.size} bytes, the descriptor says {size}")
    return Blob(digest, size, str(media), info.name)


def _member_blob(
    tar: tarfile.TarFile, names: dict[str, tarfile.TarInfo], name: str, media: str, where: str
) -> Blob:
    info = names.get(name.lstrip("./"))
    if info is None:
        raise InvalidSpec(FIELD, f"{where}: {name!r} is missing from the tarball")
    digest = hashlib.sha256()
    handle = tar.extractfile(info)
    if handle is None:
        raise InvalidSpec(FIELD, f"{where}: {name!r} is not a file")
    with handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return Blob(f"sha256:{digest.hexdigest()}", info.size, media, info.name)


def _json(tar: tarfile.TarFile, names: dict[str, tarfile.TarInfo], member: str, digest: str = "") -> Any:
    info = names.get(member.lstrip("./"))
    if info is None:
        raise InvalidSpec(FIELD, f"{member}: missing from the tarball")
    if info.size > MAX_JSON:
        raise InvalidSpec(FIELD, f"{member}: {info.size} bytes is too large for a JSON document")
    handle: IO[bytes] | None = tar.extractfile(info)
    if handle is None:
        raise InvalidSpec(FIELD, f"{member}: not a file")
    with handle:
        data = handle.read()
    if digest and _sha256(data) != digest:
        raise InvalidSpec(FIELD, f"{member}: content does not match its digest {digest}")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise InvalidSpec(FIELD, f"{member}: not valid JSON ({exc})") from None


def _dict(doc: Any, key: str, where: str) -> dict[str, Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, dict):
        raise InvalidSpec(FIELD, f"{where}.{key}: missing or not an object")
    return value


def _list(doc: Any, key: str, where: str) -> list[Any]:
    value = doc.get(key) if isinstance(doc, dict) else None
    if not isinstance(value, list):
        raise InvalidSpec(FIELD, f"{where}.{key}: missing or not a list")
    return value


def _descriptor(blob: Blob) -> dict[str, Any]:
    return {"mediaType": blob.media_type, "digest": blob.digest, "size": blob.size}


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def chain_ids(diff_ids: tuple[str, ...]) -> tuple[str, ...]:
    """The snapshot names of the layers: chain[0] = diff[0], chain[i] = sha256(chain[i-1] + " " + diff[i])."""
    chains: list[str] = []
    for diff in diff_ids:
        chains.append(diff if not chains else _sha256(f"{chains[-1]} {diff}".encode()))
    return tuple(chains)
