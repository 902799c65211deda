"""Benchmark of far-edge code deployment; prints one JSON object as its last line.

The app is our firmware plus one generated module (`bench_extra.py`), about 60 KB of source.
Each measurement runs on a fresh virtual board (the real MicroPython, WebAssembly, behind a
pseudo-terminal), in the same run:

- deploy_s: `faredge.deploy.flash` of the app, first time: interrupt, probe, compile with
  mpy-cross, write (raw-paste, deflate, on-board SHA-256, rename), config, reboot, and the wait
  for the birth with the new version.
- mpremote_s: the baseline, stock `mpremote fs cp` of the same source files to the same kind of
  board (one mpremote invocation; no reboot, no verification), so it does less than deploy_s.
- speedup: mpremote_s / deploy_s (goal ≥ 2).
- redeploy_unchanged_s: the same flash again (nothing to write; still interrupt, probe, hash,
  reboot and birth); redeploy_ratio = redeploy_unchanged_s / deploy_s (goal ≤ 0.10).
- ota_s: OTA of the same app over MQTT: null, not implemented.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from faredge.channels.serial import PyserialPort
from faredge.deploy.flasher import FlashOptions, flash
from faredge.virtual import VirtualBoard
from faredge.virtual.firmware import firmware_dir

TARGET_SOURCE = 60_000


def make_app(root: Path) -> Path:
    app = root / "app"
    shutil.copytree(firmware_dir(), app, ignore=shutil.ignore_patterns("__pycache__"))
    have = sum(p.stat().st_size for p in app.rglob("*.py"))
    lines, i = [], 0
    while have + sum(len(x) for x in lines) < TARGET_SOURCE:
        lines.append(
            f"def reading_{i}(raw, scale={i + 1}):\n    # one sample\n    return raw * scale / {i + 7}\n"
        )
        i += 1
    (app / "bench_extra.py").write_text("".join(lines))
    return app


def fresh_board(root: Path, name: str) -> VirtualBoard:
    b = VirtualBoard({"id": name, "interval_ms": 1000}, root / name).start()
    if not b.wait_console("boot 1", timeout=30):
        raise RuntimeError(f"{name} did not boot")
    return b


def our_flash(board: VirtualBoard, app: Path) -> tuple[float, dict]:
    port = PyserialPort(board.port, 921600)
    port.open()
    try:
        t = time.monotonic()
        report = flash(port, FlashOptions(app, config=board.config))
        return time.monotonic() - t, report.as_dict()
    finally:
        port.close()


def mpremote_cp(board: VirtualBoard, app: Path) -> float:
    top = sorted(str(p) for p in app.glob("*.py"))
    hal = sorted(str(p) for p in (app / "hal").glob("*.py"))
    cmd = [sys.executable, "-m", "mpremote", "connect", board.port, "fs", "cp", *top, ":"]
    cmd += ["+", "fs", "cp", *hal, ":hal/"]
    t = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    elapsed = time.monotonic() - t
    if res.returncode != 0:
        raise RuntimeError(f"mpremote failed: {res.stderr[-500:]}")
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        root = Path(tmp)
        app = make_app(root)
        files = sorted(p for p in app.rglob("*.py"))
        source_bytes = sum(p.stat().st_size for p in files)
        b1 = fresh_board(root, "bench-ours")
        try:
            deploy_s, first = our_flash(b1, app)
            redeploy_s, again = our_flash(b1, app)
        finally:
            b1.stop()
        b2 = fresh_board(root, "bench-mpremote")
        try:
            mpremote_s = mpremote_cp(b2, app)
        finally:
            b2.stop()
    assert again["written"] == [], again
    print(
        json.dumps(
            {
                "files": len(files),
                "bytes": source_bytes,
                "wire_bytes_written": first["bytes"],
                "deploy_s": round(deploy_s, 3),
                "deploy_phases_s": first["seconds"],
                "mpremote_s": round(mpremote_s, 3),
                "speedup": round(mpremote_s / deploy_s, 2),
                "redeploy_unchanged_s": round(redeploy_s, 3),
                "redeploy_ratio": round(redeploy_s / deploy_s, 3),
                "ota_s": None,
            }
        )
    )


if __name__ == "__main__":
    main()
