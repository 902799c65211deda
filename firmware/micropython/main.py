"""Runs at boot (MicroPython convention): config -> HAL -> device tasks.

Top-level code on purpose: once it has run, its bytecode and the config validator are garbage,
which keeps them out of the heap budget. A bad config stops here with the field and reason.
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
    del sys.modules["otaboot"], otaboot
    import app
    import hal

    dev = app.Device(cfg, hal.load(cfg["board"]))
    dev.ota = slot
    print("mlsysops fw", app.FW_VERSION, dev.id, "boot", dev.boot, "on", cfg["board"])
    if hasattr(asyncio, "run"):
        asyncio.run(dev.run())
    else:  # the WebAssembly port drives tasks from the JS event loop and has no asyncio.run
        dev.task = asyncio.create_task(dev.run())
