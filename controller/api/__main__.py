"""`mlsysops-api` / `python -m controller.api`: check the 'controller' extra, then run the daemon.

The check comes first so that a machine without the extra gets one line naming it, not an
ImportError trace from FastAPI's import (see controller.api.daemon for the options).
"""

from __future__ import annotations

import sys

from mlsysops.roles import require_extra


def main(argv: list[str] | None = None) -> int:
    require_extra("controller", "mlsysops-api")
    from controller.api.daemon import main as run  # the extra's libraries load from here on

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
