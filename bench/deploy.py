"""Benchmark of far-edge code deployment; prints one JSON object as its last line.

The app is our firmware plus one generated module (`bench_extra.py`), about 60 KB of source.
Each measurement runs on a fresh virtual board (the real MicroPython, WebAssembly, behind a
pseudo-terminal), in the same run:

- deploy_s: `faredge.deploy.flash` of the app, first time: interrupt, probe, compile with
  mpy-cross (an empty build cache), write (raw-paste, deflate, on-board SHA-256, rename), config,
  reboot, and the wait for the birth with the new version.
- mpremote_s: the baseline, stock `mpremote fs cp` of the same source files to the same kind of
  board (one mpremote invocation; no reboot, no verification), so it does less than deploy_s.
- speedup: mpremote_s / deploy_s (goal ≥ 2).
- deploy_no_boot_s / speedup_no_boot: the same first deploy with `boot=False` (files only, like
  mpremote's cp), on another fresh board.
- deploy_cli_s / speedup_cli: the first deploy as a user runs it, `mlsysops devices flash PORT
  --app DIR --config FILE` in its own process (an empty build cache), so its start-up counts as
  mpremote's does in mpremote_s.
- mpremote_plain_s: mpremote on a board that refuses raw-paste (the plain raw REPL, as before
  the virtual board served raw-paste; real boards older than MicroPython 1.14).
- redeploy_unchanged_s: the same flash again, with the build cache the first one left (the
  running firmware reports the release it runs: nothing is interrupted or written);
  redeploy_ratio = redeploy_unchanged_s / deploy_s (goal ≤ 0.10).
- ota_s: an over-the-air update of the same app over MQTT (`faredge.ota.bench.measure_ota`: a
  private Mosquitto, the bridge daemon and a virtual MQTT board), from `mlsysops devices update`
  to the bridge's `confirmed`: signed manifest, chunks, verification, A/B switch, trial boot,
  reconnect, confirmation.

Each value is the best of `rounds` rounds (fresh boards each), since the machine is shared.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from faredge.channels.serial import PyserialPort
from faredge.deploy.flasher import FlashOptions, flash
from faredge.ota.bench import measure_ota
from faredge.virtual import VirtualBoard
from faredge.virtual.firmware import firmware_dir

TARGET_SOURCE = 60_000


def make_app(root: Path) -> Path:
    app = root / "app"
    shutil.copytree(firmware_dir(), app, ignore=shutil.ignore_patterns("__pycache__"))
    have = sum(p.stat().st_size for p in app.rglob("*.py"))
    lines: list[str] = []
    i = 0
    while have + sum(len(x) for x in lines) < TARGET_SOURCE:
        lines.append(
            f"def reading_{i}(raw, scale={i + 1}):\n    # one sample\n    return raw * scale / {i + 7}\n"
        )
        i += 1
    (app / "bench_extra.py").write_text("".join(lines))
    return app


def fresh_board(root: Path, name: str, **kw: bool) -> VirtualBoard:
    b = VirtualBoard({"id": name, "interval_ms": 1000}, root / name, **kw).start()
    if not b.wait_console("boot 1", timeout=30) or not b.wait_ready(timeout=30):
        raise RuntimeError(f"{name} did not boot")
    return b


def our_flash(board: VirtualBoard, app: Path, cache: Path, boot: bool = True) -> tuple[float, dict]:
    port = PyserialPort(board.port, 921600)
    port.open()
    try:
        t = time.monotonic()
        report = flash(port, FlashOptions(app, config=board.config, boot=boot, cache_dir=cache))
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


def cli_flash(board: VirtualBoard, app: Path, root: Path) -> float:
    cfg = root / f"{board.config['id']}.json"
    cfg.write_text(json.dumps(board.config))
    env = {**os.environ, "MLSYSOPS_CACHE_DIR": str(root / f"cache-{board.config['id']}")}
    main = "import sys; from mlsysops.cli import main; sys.exit(main())"
    cmd = [sys.executable, "-c", main, "devices", "flash", board.port, "--app", str(app)]
    cmd += ["--config", str(cfg)]
    t = time.monotonic()
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False, env=env)
    elapsed = time.monotonic() - t
    if res.returncode != 0:
        raise RuntimeError(f"mlsysops devices flash failed: {res.stderr[-500:]}")
    return elapsed


def one_round(root: Path, app: Path, n: int) -> dict[str, float]:
    """Every measurement once, each on a fresh board."""
    got: dict[str, float] = {}
    b = fresh_board(root, f"ours-{n}")
    cache = root / f"cache-{n}"  # cold for the first deploy; the redeploy finds what it left
    try:
        got["deploy_s"], first = our_flash(b, app, cache)
        got["redeploy_unchanged_s"], again = our_flash(b, app, cache)
    finally:
        b.stop()
    assert again["written"] == [] and first["written"], (first, again)
    got["wire_bytes_written"] = first["bytes"]
    for name, kw, measure in (
        ("mpremote_s", {}, lambda board: mpremote_cp(board, app)),
        ("deploy_no_boot_s", {}, lambda board: our_flash(board, app, root / f"cold-{n}", boot=False)[0]),
        ("mpremote_plain_s", {"raw_paste": False}, lambda board: mpremote_cp(board, app)),
        ("deploy_cli_s", {}, lambda board: cli_flash(board, app, root)),
    ):
        b = fresh_board(root, f"{name}-{n}", **kw)
        try:
            got[name] = measure(b)
        finally:
            b.stop()
    return got


def main(rounds: int = 2) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-deploy-") as tmp:
        root = Path(tmp)
        app = make_app(root)
        files = sorted(p for p in app.rglob("*.py"))
        source_bytes = sum(p.stat().st_size for p in files)
        results = [one_round(root, app, n) for n in range(rounds)]
        ota_s = min(measure_ota(app) for _ in range(rounds))
    best = {k: min(r[k] for r in results) for k in results[0]}  # the machine is shared
    print(
        json.dumps(
            {
                "files": len(files),
                "bytes": source_bytes,
                "wire_bytes_written": int(best["wire_bytes_written"]),
                "rounds": rounds,
                "deploy_s": round(best["deploy_s"], 3),
                "mpremote_s": round(best["mpremote_s"], 3),
                "speedup": round(best["mpremote_s"] / best["deploy_s"], 2),
                "deploy_no_boot_s": round(best["deploy_no_boot_s"], 3),
                "speedup_no_boot": round(best["mpremote_s"] / best["deploy_no_boot_s"], 2),
                "deploy_cli_s": round(best["deploy_cli_s"], 3),
                "speedup_cli": round(best["mpremote_s"] / best["deploy_cli_s"], 2),
                "mpremote_plain_s": round(best["mpremote_plain_s"], 3),
                "redeploy_unchanged_s": round(best["redeploy_unchanged_s"], 3),
                "redeploy_ratio": round(best["redeploy_unchanged_s"] / best["deploy_s"], 3),
                "ota_s": round(ota_s, 3),
            }
        )
    )


if __name__ == "__main__":
    main()
