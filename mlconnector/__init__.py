"""The ML connector: a model registry, training and retraining on the framework's own telemetry,
drift detection, explanations and model serving, for the controller's learning policies.

An optional part (`pip install 'mlsysops[ml]'`): node agents and bridges never import it, and the
controller only through `mlconnector.contracts` (pure, no third-party imports) plus the modules
its learning policy and the `mlsysops models` commands load when the extra is installed.

Modules, one concern each (the heavy libraries stay in their own adapter):
- `contracts`: the typed vocabulary every other part speaks (signatures, versions, explanations,
  the Predictor and ModelRegistry protocols, the dataset's columns).
- `registry`: the model registry on MLflow (SQLite + local artifacts embedded by default, a
  PostgreSQL/S3 MLflow for a shared deployment): versions, signatures, metrics, tags, aliases
  (champion/challenger), lineage, promote and rollback.
- `features`, `training`, `drift`, `explain`: pure-ish numerical code (numpy, scikit-learn, scipy,
  SHAP) that turns recorded windows into a model, measures drift per feature (KS, PSI) and
  attributes each prediction to its features.
- `experiment`: the real workload (a CPU-bound service in a container under runc or gVisor, in a
  cgroup the node agent tunes, and a request generator on loopback) that produces the data.
- `serve`: the generic model server a registered model is deployed as.
"""
