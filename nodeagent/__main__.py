"""`mlsysops-nodeagent`: check that the 'node' extra is installed, then run the daemon (nodeagent.daemon).

The check comes first so that a machine without the extra gets one line naming it
(`pip install 'mlsysops[node]'`), not an ImportError trace from deep in the start-up. It runs
in a short-lived child process: reading the distributions' metadata takes importlib.metadata
and packaging (2.8 MiB of RSS), which the daemon itself never needs again.
"""

from __future__ import annotations

import os
import sys
import traceback


def require_node_extra() -> None:
    """Exit as mlsysops.roles.require_extra does (its message, EX_UNAVAILABLE) when the 'node'
    extra is incomplete; the check runs in a forked child, before any thread exists."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            from mlsysops.roles import require_extra

            require_extra("node", "mlsysops-nodeagent")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
            code = 70  # sysexits.h EX_SOFTWARE: the check itself failed
        finally:
            sys.stderr.flush()
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if code := os.waitstatus_to_exitcode(status):
        raise SystemExit(code)


def main(argv: list[str] | None = None) -> int:
    require_node_extra()
    from nodeagent.daemon import main as run  # the extra's libraries load from here on

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
