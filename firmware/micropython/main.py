"""Runs at boot (MicroPython convention): config -> OTA slot -> HAL -> device tasks.

Top-level code on purpose: once it has run, its bytecode and the config validator are garbage,
which keeps them out of the heap budget. A bad config stops here with the field and reason.
The boot loader: never replaced over the air. A trial release (ota.py) that fails to start is
left at once for the one before it, whose Device then reports the rollback.
"""

import asyncio
import sys

import config

try:
    cfg = config.load()
except config.ConfigError as e:
    print("config error:", e)
    cfg = None
del sys.modules["config"], config
if cfg:
    import otaboot

    slot = otaboot.boot(sys.path)  # an OTA release in its slot shadows the serial install
    had = set(sys.modules)
    try:
        import app
        import hal

        dev = app.Device(cfg, hal.load(cfg["board"]))
    except Exception as e:
        if not slot.get("t"):
            raise
        print("ota: release", slot["r"], "does not start:", repr(e))  # back to the previous one now
        for m in set(sys.modules) - had:
            del sys.modules[m]
        sys.path.remove(otaboot.ROOT + slot["s"])
        slot = otaboot.boot(sys.path)
        import app
        import hal

        dev = app.Device(cfg, hal.load(cfg["board"]))
    del sys.modules["otaboot"], otaboot, had
    dev.ota = slot
    print("mlsysops fw", app.FW_VERSION, dev.id, "boot", dev.boot, "on", cfg["board"])
    if hasattr(asyncio, "run"):
        asyncio.run(dev.run())
    else:  # the WebAssembly port drives tasks from the JS event loop and has no asyncio.run
        dev.task = asyncio.create_task(dev.run())
