"""The reconcile loop's inventory cache parses only what changed: a node whose status alone was
written (node sync, settings record) keeps its parsed description; a changed description, a new
node or a vanished one is seen at the next rebuild."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from controller.reconcile.reconciler import InventoryCache

NodeDoc = Callable[..., dict[str, Any]]


def stored(doc: dict[str, Any], generation: int = 1, status: dict[str, Any] | None = None) -> dict[str, Any]:
    """The object as an API server holds it (uid, generation; status apart)."""
    obj = copy.deepcopy(doc)
    obj["metadata"].update(namespace="default", uid=f"uid-{doc['metadata']['name']}", generation=generation)
    if status is not None:
        obj["status"] = status
    return obj


def test_a_rebuild_parses_only_the_nodes_whose_description_changed(node_doc: NodeDoc) -> None:
    objects = {n: stored(node_doc(n, cores=4)) for n in ("a", "b", "c")}
    cache = InventoryCache(lambda: (list(objects.values()), []), "default")
    first, _ = cache.get()
    objects["a"] = stored(node_doc("a", cores=4), status={"settings": [{"app": "x/y", "profile": {}}]})
    objects["b"] = stored(node_doc("b", cores=16), generation=2)  # its description changed
    del objects["c"]
    objects["d"] = stored(node_doc("d"))
    cache.invalidate()
    second, _ = cache.get()
    assert second.documents["a"] is first.documents["a"]  # status only: not parsed again
    assert second.documents["b"] is not first.documents["b"]
    b = second.node("b")
    assert b is not None and b.cpu_millis_capacity == 16000
    assert sorted(second.documents) == ["a", "b", "d"]


def test_without_a_generation_every_rebuild_parses_again(node_doc: NodeDoc) -> None:
    doc = {**node_doc("a"), "metadata": {"name": "a", "namespace": "default"}}
    cache = InventoryCache(lambda: ([doc], []), "default")
    first, _ = cache.get()
    cache.invalidate()
    assert cache.get()[0].documents["a"] is not first.documents["a"]
