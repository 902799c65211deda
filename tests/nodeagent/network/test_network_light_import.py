"""Issue 11, footprint: the netlink adapter needs pyroute2 only for the kernel feature probe,
which runs in a child interpreter: pyroute2 never enters the agent; a package registered
without its __init__ (host/lazyimport.py) still works whole for anyone who asks it for one of
the names the __init__ exports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run(code: str) -> list[str]:
    script = textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=Path.cwd()
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()


def test_pyroute2_never_enters_the_agent_the_probe_included() -> None:
    out = run("""
        import sys
        from nodeagent.host.lazynetlink import LazyNetlink
        port = LazyNetlink("/nonexistent")
        port.links("")  # own namespace: sysfs, pyroute2 still absent
        print("pyroute2" in sys.modules)
        port._host()  # what the first network request does
        print(any(link.name == "lo" for link in port.links("")), port.loaded)  # over netlink now
        print("pyroute2" in sys.modules)
        features = port.probe_features(["htb"], ["veth"])
        print("pyroute2.iproute" in sys.modules, "pyroute2.ndb.main" in sys.modules)
        print(all(f.supported or not f.probed for f in features))
        port.close()
    """)
    assert out == ["False", "True", "True", "False", "False", "False", "True"]


def test_the_package_becomes_whole_when_asked_for_its_names() -> None:
    out = run("""
        from nodeagent.host.lazyimport import without_package_init
        without_package_init("pyroute2")
        from pyroute2.iproute import IPRoute
        import pyroute2
        print(pyroute2.iproute.IPRoute is IPRoute)  # submodules as attributes, no __init__
        from pyroute2 import NDB, IPRoute as Exported  # the package's own names: __init__ runs now
        print(Exported is IPRoute, NDB.__name__)
    """)
    assert out == ["True", "True", "NDB"]
