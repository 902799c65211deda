"""Deployment budget: every firmware module compiles with mpy-cross; the core modules fit in
24 KB of .mpy; the heap in use after boot, measured with gc.mem_alloc() in the real
MicroPython running the compiled firmware, is at most 24 KB."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from faredge.virtual.firmware import firmware_dir, modules, stage
from faredge.virtual.host import NodeHost, run_script

BUDGET = 24 * 1024
# The core: what every device runs whatever its transport, OTA included (a device also loads one HAL).
CORE = {
    "app.py",
    "config.py",
    "frames.py",
    "link_mqtt.py",
    "link_serial.py",
    "main.py",
    "mqtt.py",
    "ota.py",
    "otaboot.py",
    "telemetry.py",
    "twin.py",
    "hal/__init__.py",
    "hal/_state.py",
}
# What each board adds on top of the core.
HALS = {
    "esp32": ["hal/esp32.py", "hal/_hw.py"],
    "rp2040": ["hal/rp2040.py", "hal/_hw.py"],
    "stm32": ["hal/stm32.py", "hal/_hw.py"],
    "virtual": ["hal/virtual.py"],
}

# Samples over the first second after boot. The heap wobbles by a few KB in the WebAssembly
# port (Python callbacks handed to JS timers stay referenced until JS collects them), so the
# budget applies to the median, and min/max are printed alongside.
BOOT = """
import gc, json, asyncio, _vboard
gc.collect()
base = gc.mem_alloc()
import main
dev = main.dev
async def measure():
    samples = []
    for _ in range(10):
        await asyncio.sleep_ms(100)
        gc.collect()
        samples.append(gc.mem_alloc())
    print("@@" + json.dumps({"base": base, "samples": samples, "boot": dev.boot}))
    _vboard.exit(0)
asyncio.create_task(measure())
"""


def test_every_module_compiles_and_core_fits_24k(tmp_path: Path) -> None:
    written = stage(tmp_path, compiled=True)
    assert len(written) == len(modules())
    sizes = {w.path.relative_to(tmp_path).with_suffix(".py").as_posix(): w.size for w in written}
    assert set(sizes) >= CORE, f"core modules missing: {CORE - set(sizes)}"
    assert {m for ms in HALS.values() for m in ms} | CORE == set(sizes), "unaccounted modules"
    core = sum(sizes[m] for m in CORE)
    per_board = {b: core + sum(sizes[m] for m in ms) for b, ms in HALS.items()}
    print(f"\nfirmware sizes (.mpy; main.py stays source): {json.dumps(sizes, sort_keys=True)}")
    print(f"core total: {core} bytes; per board with its HAL: {json.dumps(per_board)} (budget {BUDGET})")
    assert max(per_board.values()) <= BUDGET


@pytest.mark.parametrize("transport", ["serial", "mqtt"])
def test_heap_after_boot_within_24k(node_host: NodeHost, tmp_path: Path, transport: str) -> None:
    stage(tmp_path, compiled=True)
    cfg = {
        "id": "heap-1",
        "board": "virtual",
        "transport": transport,
        "mqtt": {"host": "127.0.0.1", "port": 9},
    }  # nothing listens: MQTT retries with backoff
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    res = run_script(tmp_path, BOOT, host=node_host)
    lines = [json.loads(x[2:]) for x in res.output.splitlines() if x.startswith("@@")]
    assert lines, res.output
    m = lines[0]
    assert m["boot"] == 1
    samples = sorted(m["samples"])
    median = samples[len(samples) // 2]
    print(
        f"\nheap after boot ({transport}, compiled firmware): median {median} bytes, "
        f"min {samples[0]}, max {samples[-1]} (interpreter alone: {m['base']} bytes; "
        f"budget {BUDGET})"
    )
    assert median <= BUDGET, res.output


def test_firmware_dir_is_the_repository_tree() -> None:
    assert (firmware_dir() / "main.py").is_file()
