"""How our Signature and Lineage are written into MLflow and read back (pure: no MLflow import).

MLflow's own model signature knows column names and types only; units and telemetry windows, and
the telemetry window a version was trained on, are ours. They are stored twice, for two readers:

- canonical, round-trippable JSON in the model version's tags `mlsysops.signature` and
  `mlsysops.lineage` (what `MlflowRegistry.get` decodes; compact, sorted keys, versioned by the
  `"v": 1` field so a later layout can still read old versions);
- flat, human-readable run params (`feature.<name>.unit`, `target.window`, `lineage.rows`, ...)
  that MLflow's UI lists and compares across runs; nothing reads them back.

Tag keys under `mlsysops.` and `mlflow.` are reserved: a caller's tags may not use them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from mlconnector.contracts import Feature, Lineage, RegistryError, Signature

SIGNATURE_TAG = "mlsysops.signature"
LINEAGE_TAG = "mlsysops.lineage"
CHAMPION_HISTORY_TAG = "mlsysops.champion_history"  # a registered model's tag: JSON list, oldest first
RESERVED_PREFIXES = ("mlsysops.", "mlflow.")
_LAYOUT = 1

# Model names end up in MLflow search filters and artifact paths: keep them to a safe alphabet.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise RegistryError(
            f"invalid model name {name!r}: use letters, digits, '_', '.' and '-' (at most 128 characters)"
        )
    return name


def check_user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    reserved = sorted(k for k in tags if k.startswith(RESERVED_PREFIXES))
    if reserved:
        raise RegistryError(f"tag keys {reserved} are reserved (prefixes {', '.join(RESERVED_PREFIXES)})")
    return {str(k): str(v) for k, v in tags.items()}


def user_tags(tags: Mapping[str, str]) -> dict[str, str]:
    """A version's tags as the caller set them (without the registry's own)."""
    return {k: v for k, v in tags.items() if not k.startswith(RESERVED_PREFIXES)}


def _feature(f: Feature) -> dict[str, str]:
    return {"name": f.name, "unit": f.unit, "window": f.window}


def encode_signature(signature: Signature) -> str:
    doc = {
        "v": _LAYOUT,
        "features": [_feature(f) for f in signature.features],
        "target": _feature(signature.target),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def decode_signature(text: str) -> Signature:
    doc = json.loads(text)
    return Signature(
        features=tuple(Feature(**f) for f in doc["features"]),
        target=Feature(**doc["target"]),
    )


def encode_lineage(lineage: Lineage) -> str:
    doc: dict[str, Any] = {
        "v": _LAYOUT,
        "source": lineage.source,
        "window_start": lineage.window_start,
        "window_end": lineage.window_end,
        "rows": lineage.rows,
        "digest": lineage.digest,
        "parent_version": lineage.parent_version,
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def decode_lineage(text: str) -> Lineage:
    doc = json.loads(text)
    return Lineage(
        source=doc["source"],
        window_start=float(doc["window_start"]),
        window_end=float(doc["window_end"]),
        rows=int(doc["rows"]),
        digest=doc["digest"],
        parent_version=doc.get("parent_version"),
    )


def run_params(signature: Signature, lineage: Lineage | None, estimator: str) -> dict[str, str]:
    """The flat, readable view of a version for MLflow's run page (not read back)."""
    params = {
        "estimator": estimator,
        "signature.features": ",".join(signature.feature_names),
        "target.name": signature.target.name,
        "target.unit": signature.target.unit,
        "target.window": signature.target.window,
    }
    for f in signature.features:
        params[f"feature.{f.name}.unit"] = f.unit
        params[f"feature.{f.name}.window"] = f.window
    if lineage is not None:
        params.update(
            {
                "lineage.source": lineage.source,
                "lineage.window_start": repr(lineage.window_start),
                "lineage.window_end": repr(lineage.window_end),
                "lineage.rows": str(lineage.rows),
                "lineage.digest": lineage.digest,
                "lineage.parent_version": lineage.parent_version or "",
            }
        )
    return params


def encode_history(versions: list[str]) -> str:
    return json.dumps(versions)


def decode_history(text: str | None) -> list[str]:
    return [str(v) for v in json.loads(text)] if text else []
