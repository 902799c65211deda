"""Every firmware module's unit tests, executed inside the real MicroPython (WebAssembly).

The test bodies live in device/mpy_*.py (MicroPython code); conftest turns each test function
into one `device_case`, and runs them all in one interpreter per session.
"""

from __future__ import annotations

from pathlib import Path

import pytest

FIRMWARE = Path(__file__).resolve().parents[3] / "firmware" / "micropython"
DEVICE = Path(__file__).with_name("device")


def test_every_firmware_module_has_device_tests() -> None:
    tested = {p.stem.removeprefix("mpy_") for p in DEVICE.glob("mpy_*.py")}
    core = {p.stem for p in FIRMWARE.glob("*.py")} - {"main"}
    missing = core - tested
    assert not missing, f"firmware modules without device tests: {sorted(missing)}"


def test_in_micropython(
    device_results: dict[tuple[str, str], tuple[bool, str]], device_case: tuple[str, str]
) -> None:
    module, name = device_case
    if (module, "<import>") in device_results:
        pytest.fail(f"{module} does not import in MicroPython:\n{device_results[(module, '<import>')][1]}")
    assert device_case in device_results, f"{module}.{name} did not run"
    ok, detail = device_results[device_case]
    assert ok, detail
