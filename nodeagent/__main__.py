"""`mlsysops-nodeagent`: check that the 'node' extra is installed, then run the daemon (nodeagent.daemon).

The check comes first so that a machine without the extra gets one line naming it
(`pip install 'mlsysops[node]'`), not an ImportError trace from deep in the start-up.
"""

from __future__ import annotations

import sys

from mlsysops.roles import require_extra


def main(argv: list[str] | None = None) -> int:
    require_extra("node", "mlsysops-nodeagent")
    from nodeagent.daemon import main as run  # the extra's libraries load from here on

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
