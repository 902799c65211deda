"""The embedded object store: the controller's MLSysOps objects in one SQLite file.

`open(path)` returns a connected `SqliteStore`, an `ObjectApi` (controller.kube.objectapi)
like `KubeApi`, so the reconcile loop, the CLI's AppStore and the REST API use it unchanged:

    from controller import store
    api = store.open("/var/lib/mlsysops/controller.db")
    api.apply(app_object, field_manager="mlsysops-api")

Several processes may open the same file (the REST API and the controller, for instance);
see controller.store.sqlite for the semantics and the cross-process watch latency. The
embedded controller over a store is built by controller.reconcile.embedded.build_embedded;
whoever runs it holds `ControllerLock(path)` meanwhile (one controller per store).
"""

from __future__ import annotations

import os

from controller.store.lock import ControllerLock
from controller.store.sqlite import SqliteStore

__all__ = ["ControllerLock", "SqliteStore", "open"]


def open(path: str | os.PathLike[str], **options: float) -> SqliteStore:
    """The store at path, connected (created when missing). `options` are SqliteStore's
    (history, poll_interval, bookmark_interval, busy_timeout)."""
    return SqliteStore(path, **options).connect()  # type: ignore[arg-type]
