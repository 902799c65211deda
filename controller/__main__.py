"""`python -m controller`: check the 'controller' extra is installed, then run controller.daemon.

The check comes first so that a machine without the extra gets one line naming it
(`pip install 'mlsysops[controller]'`), not an ImportError trace from deep in the start-up.
"""

from __future__ import annotations

import sys

from mlsysops.roles import require_extra


def main(argv: list[str] | None = None) -> int:
    require_extra("controller", "python -m controller")
    from controller.daemon import main as run  # the extra's libraries load from here on

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
