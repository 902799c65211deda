"""The model registry on MLflow (the only package that imports MLflow, an import-linter contract).

- `mlflow_registry.MlflowRegistry`: `mlconnector.contracts.ModelRegistry` on an MLflow tracking store
  and model registry (SQLite + local artifacts embedded, PostgreSQL/S3 or an MLflow server shared).
- `champions.ChampionPredictors`: each model's champion, cached for a policy's decision path.
- `codec`: how our signatures (units, windows) and lineage are stored in MLflow tags and params.

Importing this package does not import MLflow: that happens on a registry's first use.
"""

from mlconnector.registry.champions import ChampionPredictors
from mlconnector.registry.mlflow_registry import (
    PREVIOUS_CHAMPION,
    TRUSTED_TYPE_PACKAGES,
    MlflowRegistry,
    RegistryUnavailable,
)

__all__ = [
    "PREVIOUS_CHAMPION",
    "TRUSTED_TYPE_PACKAGES",
    "ChampionPredictors",
    "MlflowRegistry",
    "RegistryUnavailable",
]
