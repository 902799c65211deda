"""The signed manifest of an OTA release, and the per-device keys that sign it.

A manifest says which device it is for, its release number (monotonic per device: the board
refuses any number not above the highest it ever installed, so a replayed or older manifest
does nothing), the version string and every file with its size and SHA-256. On the wire it is
`<64 hex digits of HMAC-SHA256(device key, body)><body>`, body = compact JSON: the board checks
the MAC over the bytes it received, so nothing has to be re-serialised identically on both sides.

HMAC, not Ed25519: a pure-Python Ed25519 verification takes seconds to minutes on a 160 MHz
MicroPython board without a native extension, while HMAC-SHA256 is two hashlib calls. The price
is a symmetric key per device: each key is derived from the bridge's fleet secret and the
device id (`device_key`), so a leaked device key signs releases for that device only.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from faredge.deploy.release import BOOT_FILES, Release
from faredge.errors import Invalid

SIG_LEN = 64  # hex digits of the HMAC-SHA256 in front of the body
MAX_MANIFEST_BYTES = 3500  # the board reads MQTT packets of at most 4096 bytes (firmware mqtt.py)
_KEY_LABEL = b"mlsysops-ota-device-key\0"


@dataclass(frozen=True)
class ManifestFile:
    name: str  # POSIX path inside the slot directory
    size: int
    sha256: str


@dataclass(frozen=True)
class Manifest:
    device: str
    release: int
    version: str
    files: tuple[ManifestFile, ...]

    def body(self) -> bytes:
        files = [[f.name, f.size, f.sha256] for f in self.files]
        obj = {"id": self.device, "r": self.release, "v": self.version, "f": files}
        return json.dumps(obj, separators=(",", ":")).encode()

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)


def ota_files(release: Release) -> tuple[ManifestFile, ...]:
    """The release's files an OTA ships: all but the boot loader (main.py, boot.py), which only a
    serial deploy replaces, since a broken boot loader could not roll itself back."""
    return tuple(ManifestFile(f.name, f.size, f.sha256) for f in release.files if f.name not in BOOT_FILES)


def sign(manifest: Manifest, key: bytes) -> bytes:
    """The wire form; Invalid when the board could not receive it in one MQTT packet."""
    body = manifest.body()
    payload = hmac.new(key, body, hashlib.sha256).hexdigest().encode() + body
    if len(payload) > MAX_MANIFEST_BYTES:
        raise Invalid("app", f"manifest of {len(payload)} bytes (at most {MAX_MANIFEST_BYTES}): fewer files")
    return payload


def verify(payload: bytes, key: bytes, device: str) -> Manifest:
    """What the board checks, in CPython (the firmware's ota.py does the same): signature first,
    then the device and the file list; Invalid naming what is wrong."""
    sig, body = payload[:SIG_LEN], payload[SIG_LEN:]
    if not hmac.compare_digest(sig, hmac.new(key, body, hashlib.sha256).hexdigest().encode()):
        raise Invalid("manifest", "bad signature")
    try:
        m = json.loads(body)
        files = tuple(ManifestFile(str(n), int(s), str(h)) for n, s, h in m["f"])
        manifest = Manifest(str(m["id"]), int(m["r"]), str(m["v"]), files)
    except (ValueError, KeyError, TypeError) as exc:
        raise Invalid("manifest", f"unreadable: {exc}") from None
    if manifest.device != device:
        raise Invalid("manifest", f"for device {manifest.device!r}, not {device!r}")
    for f in files:
        check_name(f.name)
    return manifest


def check_name(name: str) -> None:
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or any(part.startswith(".") for part in p.parts):
        raise Invalid("manifest", f"file name {name!r} leaves the slot")


def device_key(fleet_secret: bytes, device_id: str) -> bytes:
    """The device's 32-byte key: HMAC(fleet secret, label + id)."""
    return hmac.new(fleet_secret, _KEY_LABEL + device_id.encode(), hashlib.sha256).digest()


class KeyStore:
    """The fleet secret in one file (created 0600 on first use) and the keys derived from it."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def secret(self) -> bytes:
        try:
            return bytes.fromhex(self.path.read_text().strip())
        except FileNotFoundError:
            pass
        except ValueError as exc:
            raise Invalid(str(self.path), f"not a hex secret: {exc}") from None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.touch(mode=0o600)
        tmp.write_text(secrets.token_hex(32) + "\n")
        tmp.replace(self.path)
        return bytes.fromhex(self.path.read_text().strip())

    def key(self, device_id: str) -> bytes:
        return device_key(self.secret(), device_id)
