"""Import a package's submodules without running the package's `__init__`.

Some libraries' `__init__` imports every API they have only to re-export the names, such as
prometheus_client's (its HTTP server, push gateway client, WSGI/ASGI apps, urllib, email,
http.server: 3 MiB), where the agent needs a few submodules. `without_package_init(name)`
registers the package so that those submodules import as usual while the `__init__` waits;
whoever asks the package itself for one of its re-exported names gets the whole package then,
as if it had been imported normally.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any


def without_package_init(name: str) -> None:
    """Register package `name` with its submodules importable but its `__init__` not run yet.

    The first attribute asked of the package that is not a submodule runs the `__init__` then
    (PEP 562 module __getattr__). Nothing happens when the package is imported already or is
    not a package."""
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        return
    package = importlib.util.module_from_spec(spec)
    loader = spec.loader

    def __getattr__(attr: str) -> Any:
        if importlib.util.find_spec(f"{name}.{attr}") is not None:
            return importlib.import_module(f"{name}.{attr}")
        del package.__dict__["__getattr__"]
        loader.exec_module(package)  # the whole package after all
        return getattr(package, attr)

    package.__dict__["__getattr__"] = __getattr__
    sys.modules[name] = package
