"""OTA manifests (faredge.ota.manifest), pure: what is signed, what a board would refuse, the keys."""

from __future__ import annotations

import hashlib
import hmac
import json
import stat
from pathlib import Path

import pytest

from faredge.deploy.release import FileEntry, Release
from faredge.errors import Invalid
from faredge.ota.manifest import (
    MAX_MANIFEST_BYTES,
    SIG_LEN,
    KeyStore,
    Manifest,
    ManifestFile,
    device_key,
    ota_files,
    sign,
    verify,
)

KEY = bytes(range(32))
RELEASE = Release(
    "1.2.0",
    (
        FileEntry("main.py", b"boot loader"),
        FileEntry("app.mpy", b"\x4d\x06app"),
        FileEntry("hal/virtual.py", b""),
    ),
)


def _manifest(device: str = "d1", release: int = 3) -> Manifest:
    return Manifest(device, release, RELEASE.version, ota_files(RELEASE))


def test_files_carry_size_and_sha256_and_leave_the_boot_loader_out() -> None:
    files = ota_files(RELEASE)
    assert [f.name for f in files] == ["app.mpy", "hal/virtual.py"]
    assert files[0] == ManifestFile("app.mpy", 5, hashlib.sha256(b"\x4d\x06app").hexdigest())


def test_wire_form_is_hex_hmac_then_the_compact_body() -> None:
    payload = sign(_manifest(), KEY)
    body = payload[SIG_LEN:]
    assert payload[:SIG_LEN] == hmac.new(KEY, body, hashlib.sha256).hexdigest().encode()
    assert json.loads(body) == {
        "id": "d1",
        "r": 3,
        "v": "1.2.0",
        "f": [[f.name, f.size, f.sha256] for f in ota_files(RELEASE)],
    }
    assert verify(payload, KEY, "d1") == _manifest()


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        (lambda p: p[:SIG_LEN] + p[SIG_LEN:].replace(b'"r":3', b'"r":9'), "bad signature"),
        (lambda p: b"0" * SIG_LEN + p[SIG_LEN:], "bad signature"),
        (lambda p: p[:-1], "bad signature"),
    ],
)
def test_any_change_breaks_the_signature(spoil: object, reason: str) -> None:
    with pytest.raises(Invalid, match=reason):
        verify(spoil(sign(_manifest(), KEY)), KEY, "d1")  # type: ignore[operator]


def test_another_devices_key_or_id_is_refused() -> None:
    with pytest.raises(Invalid, match="bad signature"):
        verify(sign(_manifest("d2"), device_key(b"fleet", "d2")), device_key(b"fleet", "d1"), "d1")
    with pytest.raises(Invalid, match="for device 'd2'"):
        verify(sign(_manifest("d2"), KEY), KEY, "d1")


@pytest.mark.parametrize("name", ["../main.py", "/main.py", ".mlsysops-release", "hal/.x", ""])
def test_names_outside_the_slot_are_refused(name: str) -> None:
    m = Manifest("d1", 1, "1", (ManifestFile(name, 1, "0" * 64),))
    with pytest.raises(Invalid, match="leaves the slot"):
        verify(sign(m, KEY), KEY, "d1")


def test_a_manifest_the_board_cannot_receive_is_not_built() -> None:
    many = tuple(ManifestFile(f"m{i:03}.py", i, "0" * 64) for i in range(60))
    with pytest.raises(Invalid, match=f"at most {MAX_MANIFEST_BYTES}"):
        sign(Manifest("d1", 1, "1", many), KEY)


def test_device_keys_differ_per_device_and_are_stable(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "ota" / "fleet.key")
    k1 = store.key("d1")
    assert len(k1) == 32 and k1 != store.key("d2")
    assert KeyStore(tmp_path / "ota" / "fleet.key").key("d1") == k1
    assert stat.S_IMODE((tmp_path / "ota" / "fleet.key").stat().st_mode) == 0o600
    (tmp_path / "bad.key").write_text("not hex\n")
    with pytest.raises(Invalid, match="not a hex secret"):
        KeyStore(tmp_path / "bad.key").secret()
