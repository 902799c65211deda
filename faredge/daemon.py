"""`mlsysops-faredge --config /etc/mlsysops/faredge.yaml`: run the bridge until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from faredge.bootstrap import build
from faredge.config import Config, load_config
from faredge.errors import FarEdgeError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlsysops-faredge", description=__doc__)
    parser.add_argument(
        "--config", type=Path, help="YAML config (docs/faredge-bridge.md); defaults otherwise"
    )
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config) if args.config else Config()
        bridge = build(config)
        bridge.start()
    except (FarEdgeError, OSError) as exc:
        print(f"mlsysops-faredge: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    bridge.stop()
    return 0
