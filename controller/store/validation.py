"""What the embedded store checks before it writes, as an API server with our CRDs would.

- metadata.name a DNS subdomain (lower case alphanumerics, '-' and '.', at most 253), the
  namespace a DNS label; labels and annotations maps of strings; ownerReferences with a uid;
- MLSysOps kinds against the openAPIV3Schema of their CRDs (controller.model.schema, the same
  schemas `kubectl apply` installs and plan mode validates with), status included.
Each problem names its field (`MLSysOpsApp.components[0].name: expected a string`), and the
store raises Invalid before anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from controller.kube.resources import CRD_GROUP, Resource
from controller.model.schema import default_schemas

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def problems(res: Resource, obj: Mapping[str, Any]) -> list[str]:
    """Every reason the API server would refuse to store obj ([] when it is valid)."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        return [f"{res.kind}.metadata: expected a mapping"]
    found = _metadata(res, meta)
    if res.group == CRD_GROUP and not found:
        found = [str(p) for p in default_schemas().problems(res.kind, obj)]
    return found


def _metadata(res: Resource, meta: Mapping[str, Any]) -> list[str]:
    out = []
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        out.append(f"{res.kind}.metadata.name: expected a name (required field is missing)")
    elif len(name) > 253 or not _SUBDOMAIN.match(name):
        out.append(f"{res.kind}.metadata.name: expected lower case alphanumerics, '-' or '.', starting and "
                   f"ending with an alphanumeric, at most 253 characters (got {name!r})")
    namespace = meta.get("namespace", "")
    if res.namespaced and (not isinstance(namespace, str) or len(namespace) > 63
                           or not _LABEL.match(namespace)):
        out.append(f"{res.kind}.metadata.namespace: expected a DNS label (got {namespace!r})")
    for field in ("labels", "annotations"):
        value = meta.get(field)
        if value is not None and not (isinstance(value, Mapping)
                                      and all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in value.items())):
            out.append(f"{res.kind}.metadata.{field}: expected a mapping of strings to strings")
    refs = meta.get("ownerReferences")
    if refs is not None:
        if not isinstance(refs, list) or not all(isinstance(r, Mapping) for r in refs):
            out.append(f"{res.kind}.metadata.ownerReferences: expected a list of mappings")
        else:
            for i, ref in enumerate(refs):
                for key in ("apiVersion", "kind", "name", "uid"):
                    if not isinstance(ref.get(key), str) or not ref.get(key):
                        out.append(f"{res.kind}.metadata.ownerReferences[{i}].{key}: expected a string "
                                   "(required field is missing)")
    return out
