"""Objects the store tests write."""

from __future__ import annotations

from typing import Any


def app(name: str = "shop", image: str = "registry/web:1", **meta: Any) -> dict[str, Any]:
    """A minimal valid MLSysOpsApp in Kubernetes form."""
    return {
        "apiVersion": "mlsysops.eu/v1",
        "kind": "MLSysOpsApp",
        "metadata": {"name": name, "namespace": "default", **meta},
        "components": [{"metadata": {"name": "web"}, "containers": [{"image": image}]}],
    }
