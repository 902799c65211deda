"""The reconcile loop's informer on the embedded store: list, then watch from the list's version;
a compacted history (Gone) makes it list again and report what changed meanwhile, deletions
included, exactly as against an API server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from storedocs import app

from controller import store
from controller.kube import resources
from controller.reconcile.informer import Informer
from controller.reconcile.queue import Backoff
from controller.store import SqliteStore
from mlsysops.testing import wait_for


@pytest.fixture
def informer(db: SqliteStore) -> Iterator[tuple[Informer, list[tuple[str, str]]]]:
    seen: list[tuple[str, str]] = []
    running = Informer(db, resources.APP, "default", Backoff(base=0.01, cap=0.1), watch_timeout=1)
    running.add_handler(lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
    stop = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
    thread.start()
    yield running, seen
    stop.set()
    thread.join(10)


def names(informer: Informer) -> list[str]:
    return sorted(o["metadata"]["name"] for o in informer.items())


def test_the_informer_caches_what_the_store_holds_and_follows_its_changes(
    db: SqliteStore, informer: tuple[Informer, list[tuple[str, str]]]
) -> None:
    running, seen = informer
    db.apply(app("a"))
    running.synced.wait(10)
    db.apply(app("b"))
    db.delete(resources.APP, "default", "a")
    wait_for(lambda: names(running) == ["b"], timeout=10, what="a gone, b cached")
    assert ("DELETED", "a") in seen and ("ADDED", "b") in seen


def test_a_compacted_history_makes_the_informer_relist_without_missing_a_deletion(db: SqliteStore) -> None:
    """The informer's store polls every 2 s; another instance (as another process would)
    deletes, creates and compacts while it waits: its next poll is Gone, it lists again and
    reports the deletion it never saw as an event."""
    seen: list[tuple[str, str]] = []
    db.apply(app("a"))
    db.apply(app("b"))
    with store.open(db.path, poll_interval=2.0) as slow:
        running = Informer(slow, resources.APP, "default", Backoff(base=0.01, cap=0.1), watch_timeout=30)
        running.add_handler(lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
        stop = threading.Event()
        thread = threading.Thread(target=running.run, args=(stop,), daemon=True)
        thread.start()
        try:
            assert running.synced.wait(10)
            time.sleep(0.3)  # the informer's watch polled once and waits
            db.delete(resources.APP, "default", "a")
            db.apply(app("c"))
            db.compact()
            wait_for(lambda: names(running) == ["b", "c"], timeout=10, what="the cache after the compaction")
            assert running.relists == 1
            assert ("DELETED", "a") in seen and ("ADDED", "c") in seen
        finally:
            stop.set()
            thread.join(10)
