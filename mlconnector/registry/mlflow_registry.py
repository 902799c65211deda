"""`MlflowRegistry`: the ModelRegistry contract on MLflow's tracking server and model registry.

Why MLflow: it already keeps runs (params, metrics, tags, dataset inputs), logged models with
their signatures, and a model registry with numbered versions and aliases, on SQLite + local files
embedded or on PostgreSQL + S3 shared; we add only what it lacks (units and windows in signatures,
lineage to a telemetry window, a champion history for rollback) as tags, see `codec`.

Layout in MLflow (for a model `name`):
- experiment `mlsysops/<name>`: one run per registered version, with params (the readable
  signature and lineage), metrics, the caller's tags, the training window as a dataset input
  (context "training"), and a logged model (the scikit-learn flavour, saved with skops, with an
  MLflow signature whose input columns are the Signature's features);
- registered model `<name>`: version N points at that logged model; its tags carry the canonical
  signature and lineage (`mlsysops.signature`, `mlsysops.lineage`) and the caller's tags;
  aliases `champion`, `challenger` and `previous-champion` (the top of the champion history, a
  registered-model tag, so rollback can go back more than once).

Everything MLflow raises is translated here into RegistryError (unknown names, bad input) or its
subclass RegistryUnavailable (the store cannot be reached): no MLflow stack trace leaves this module.
Nothing is opened in the constructor: the client, the database and its directory are created on
first use.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Self

from mlconnector.contracts import (
    CHAMPION,
    Lineage,
    ModelVersion,
    Predictor,
    RegistryError,
    Signature,
)
from mlconnector.registry import codec

log = logging.getLogger(__name__)

PREVIOUS_CHAMPION = "previous-champion"
EXPERIMENT_PREFIX = "mlsysops/"
# skops loads only types it trusts; beyond its defaults, a model may hold types from these packages
# (e.g. sklearn.tree._tree.Tree, numpy dtypes), checked when a version is saved and again when it is
# loaded, from the artifact itself: the list MLflow writes into MLmodel is not trusted on load.
TRUSTED_TYPE_PACKAGES = ("sklearn", "numpy", "scipy")
_MODEL_DIR = "model"


class RegistryUnavailable(RegistryError):
    """The registry's store cannot be reached or failed (not a wrong name): callers holding a loaded
    model may keep using it."""


def _import_mlflow() -> Any:
    """Import MLflow quietly: no telemetry thread reporting usage over the network and no stderr
    handler of its own (its records go to the `mlflow` logger, configured by the application), no
    download progress bars.
    An operator who wants either sets the variable before starting the process."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    return mlflow


def trusted_types(untrusted: list[str]) -> list[str]:
    """The types skops would refuse, if all are from TRUSTED_TYPE_PACKAGES; RegistryError otherwise."""
    foreign = sorted(t for t in untrusted if t.split(".", 1)[0] not in TRUSTED_TYPE_PACKAGES)
    if foreign:
        raise RegistryError(
            f"the model holds types outside {', '.join(TRUSTED_TYPE_PACKAGES)} that skops will not load "
            f"safely: {foreign}"
        )
    return sorted(untrusted)


class MlflowRegistry:
    """The model registry on MLflow. `tracking_uri`: `sqlite:////abs/path/mlflow.db` embedded, or
    `postgresql+psycopg://user:pass@host/db` (or an `http(s)://` MLflow server) shared; the same URI
    serves tracking and the model registry. `artifact_location`: where new experiments put artifacts
    (a directory, `file://`, `s3://...`); None leaves MLflow's default (a server's own store)."""

    def __init__(self, tracking_uri: str, artifact_location: str | None = None) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_location = artifact_location
        self._directory: Path | None = None
        self._client_obj: Any = None
        self._lock = threading.Lock()
        self._estimators: dict[tuple[str, str, str], Any] = {}

    @classmethod
    def embedded(cls, directory: Path) -> Self:
        """SQLite `directory/mlflow.db` and artifacts under `directory/artifacts` (created on first use)."""
        directory = Path(directory).absolute()
        registry = cls(f"sqlite:///{directory / 'mlflow.db'}", (directory / "artifacts").as_uri())
        registry._directory = directory
        return registry

    def __repr__(self) -> str:
        return f"MlflowRegistry({self.tracking_uri!r})"

    # --- the client, created on first use -----------------------------------------------------

    @property
    def _client(self) -> Any:
        with self._lock:
            if self._client_obj is None:
                mlflow = _import_mlflow()
                with self._errors("open the registry"), warnings.catch_warnings():
                    if self._directory is not None:
                        (self._directory / "artifacts").mkdir(parents=True, exist_ok=True)
                    # its SQLAlchemy store trips SQLAlchemy deprecations on first use: not ours to act on
                    warnings.simplefilter("ignore", DeprecationWarning)
                    client = mlflow.MlflowClient(
                        tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                    )
                    client.search_registered_models(max_results=1)  # creates/migrates the schema now
                self._client_obj = client
            return self._client_obj

    @contextlib.contextmanager
    def _errors(self, doing: str, missing: str | None = None) -> Iterator[None]:
        """Translate MLflow's exceptions: `missing` is the message for a name that does not exist."""
        _import_mlflow()
        from mlflow.exceptions import MlflowException

        try:
            yield
        except RegistryError:
            raise
        except MlflowException as e:
            code = getattr(e, "error_code", "")
            if missing is not None and code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                raise RegistryError(missing) from None
            if code in ("INVALID_PARAMETER_VALUE", "RESOURCE_ALREADY_EXISTS"):
                raise RegistryError(f"cannot {doing}: {e.message}") from None
            log.debug("registry %s: cannot %s", self.tracking_uri, doing, exc_info=True)
            raise RegistryUnavailable(f"registry {self.tracking_uri}: cannot {doing}: {e.message}") from None
        except Exception as e:  # the store's own errors (sqlalchemy, network, file system)
            log.debug("registry %s: cannot %s", self.tracking_uri, doing, exc_info=True)
            raise RegistryUnavailable(
                f"registry {self.tracking_uri}: cannot {doing}: {type(e).__name__}: {e}"
            ) from None

    # --- reads --------------------------------------------------------------------------------

    def models(self) -> list[str]:
        client = self._client
        names: list[str] = []
        with self._errors("list models"):
            token = None
            while True:
                page = client.search_registered_models(max_results=1000, page_token=token)
                names.extend(m.name for m in page)
                token = page.token
                if not token:
                    break
        return sorted(names)

    def versions(self, name: str) -> list[ModelVersion]:
        codec.check_name(name)
        client = self._client
        self._registered(name)
        with self._errors(f"list the versions of model {name!r}"):
            found = client.search_model_versions(f"name = '{name}'")
        # search results may omit aliases: read each version whole (a handful per model)
        return sorted(
            (self._version(self._mv(name, mv.version)) for mv in found), key=lambda v: int(v.version)
        )

    def get(self, name: str, version_or_alias: str) -> ModelVersion:
        return self._version(self._resolve(name, version_or_alias))

    def champion_version(self, name: str) -> str | None:
        """The champion's version number, or None (no such model, or no champion): one cheap query."""
        try:
            return str(self._resolve(name, CHAMPION).version)
        except RegistryUnavailable:
            raise
        except RegistryError:
            return None

    def _registered(self, name: str) -> Any:
        with self._errors(f"read model {name!r}", missing=f"no model {name!r} in the registry"):
            return self._client.get_registered_model(name)

    def _mv(self, name: str, version: str) -> Any:
        with self._errors(
            f"read version {version} of model {name!r}", missing=f"model {name!r} has no version {version}"
        ):
            return self._client.get_model_version(name, str(version))

    def _resolve(self, name: str, ref: str) -> Any:
        """The MLflow model version `ref` names: a version number, else an alias."""
        codec.check_name(name)
        ref = str(ref)
        if ref.isdigit():
            try:
                return self._mv(name, ref)
            except RegistryUnavailable:
                raise
            except RegistryError:
                self._registered(name)  # says "no model" when that is the reason
                raise
        client = self._client
        try:
            with self._errors(
                f"resolve alias {ref!r} of model {name!r}", missing=f"model {name!r} has no alias {ref!r}"
            ):
                return client.get_model_version_by_alias(name, ref)
        except RegistryUnavailable:
            raise
        except RegistryError:
            self._registered(name)
            raise

    def _version(self, mv: Any) -> ModelVersion:
        tags = dict(mv.tags or {})
        if codec.SIGNATURE_TAG not in tags:
            raise RegistryError(
                f"version {mv.version} of model {mv.name!r} was not registered by mlsysops (no signature tag)"
            )
        metrics: dict[str, float] = {}
        if mv.run_id:
            with self._errors(f"read the run of version {mv.version} of model {mv.name!r}"):
                metrics = dict(self._client.get_run(mv.run_id).data.metrics)
        lineage_text = tags.get(codec.LINEAGE_TAG)
        return ModelVersion(
            name=mv.name,
            version=str(mv.version),
            signature=codec.decode_signature(tags[codec.SIGNATURE_TAG]),
            metrics=metrics,
            tags=codec.user_tags(tags),
            aliases=tuple(sorted(mv.aliases or ())),
            lineage=codec.decode_lineage(lineage_text) if lineage_text else None,
            created_at=mv.creation_timestamp / 1000.0,
        )

    # --- register -----------------------------------------------------------------------------

    def register(
        self,
        name: str,
        model: Any,
        signature: Signature,
        *,
        metrics: Mapping[str, float],
        tags: Mapping[str, str] | None = None,
        lineage: Lineage | None = None,
    ) -> ModelVersion:
        """Log a run (params, metrics, tags, the training window as a dataset input), log the model in
        it and register it as the next version of `name` (no alias set: promote or alias it)."""
        codec.check_name(name)
        user = codec.check_user_tags(tags or {})
        self._check_signature(name, model, signature)
        skops_types = self._skops_types(model)
        client = self._client
        estimator = f"{type(model).__module__}.{type(model).__qualname__}"
        experiment_id = self._experiment(name)
        with self._errors(f"start a run for model {name!r}"):
            run = client.create_run(experiment_id, run_name=f"{name}-{int(time.time())}", tags=user)
        run_id = run.info.run_id
        try:
            self._log_run(run_id, signature, lineage, estimator, metrics)
            model_id, source = self._log_model(experiment_id, run_id, name, model, signature, skops_types)
            version_tags = {**user, codec.SIGNATURE_TAG: codec.encode_signature(signature)}
            if lineage is not None:
                version_tags[codec.LINEAGE_TAG] = codec.encode_lineage(lineage)
            with self._errors(f"register a version of model {name!r}"):
                self._create_registered(name)
                mv = client.create_model_version(
                    name,
                    source=source,
                    run_id=run_id,
                    tags=version_tags,
                    model_id=model_id,
                    await_creation_for=0,
                )
                client.set_terminated(run_id, "FINISHED")
        except BaseException:
            with contextlib.suppress(Exception):
                client.set_terminated(run_id, "FAILED")
            raise
        log.info("registered %s version %s (run %s)", name, mv.version, run_id)
        return self._version(self._mv(name, mv.version))

    def _create_registered(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.create_registered_model(name)
        except MlflowException as e:
            if e.error_code != "RESOURCE_ALREADY_EXISTS":
                raise

    @staticmethod
    def _check_signature(name: str, model: Any, signature: Signature) -> None:
        if not hasattr(model, "predict"):
            raise RegistryError(f"model {name!r}: {type(model).__name__} has no predict()")
        n = getattr(model, "n_features_in_", None)
        if n is not None and int(n) != len(signature.features):
            raise RegistryError(
                f"model {name!r}: the estimator reads {n} features, the signature names "
                f"{len(signature.features)}: {list(signature.feature_names)}"
            )
        seen = getattr(model, "feature_names_in_", None)
        if seen is not None and tuple(str(c) for c in seen) != signature.feature_names:
            raise RegistryError(
                f"model {name!r}: the estimator was fitted on columns {list(seen)}, the signature names "
                f"{list(signature.feature_names)}"
            )

    @staticmethod
    def _skops_types(model: Any) -> list[str]:
        import skops.io

        try:
            untrusted = skops.io.get_untrusted_types(data=skops.io.dumps(model))
        except Exception as e:
            raise RegistryError(f"skops cannot save a {type(model).__name__}: {e}") from None
        return trusted_types(list(untrusted))

    def _experiment(self, name: str) -> str:
        client = self._client
        experiment_name = EXPERIMENT_PREFIX + name
        with self._errors(f"find the experiment of model {name!r}"):
            found = client.get_experiment_by_name(experiment_name)
            if found is not None:
                return str(found.experiment_id)
            location = f"{self.artifact_location.rstrip('/')}/{name}" if self.artifact_location else None
            try:
                return str(client.create_experiment(experiment_name, artifact_location=location))
            except Exception:  # created meanwhile by another writer
                found = client.get_experiment_by_name(experiment_name)
                if found is None:
                    raise
                return str(found.experiment_id)

    def _log_run(
        self,
        run_id: str,
        signature: Signature,
        lineage: Lineage | None,
        estimator: str,
        metrics: Mapping[str, float],
    ) -> None:
        from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

        now_ms = int(time.time() * 1000)
        with self._errors("log the run's params and metrics"):
            self._client.log_batch(
                run_id,
                metrics=[Metric(k, float(v), now_ms, 0) for k, v in sorted(metrics.items())],
                params=[Param(k, v) for k, v in codec.run_params(signature, lineage, estimator).items()],
            )
            if lineage is not None:
                dataset = Dataset(
                    name="training-window",
                    digest=lineage.digest[:36],  # MLflow's column holds 36 characters; the full one is a tag
                    source_type="mlsysops",
                    source=lineage.source,
                    profile=codec.encode_lineage(lineage),
                )
                self._client.log_inputs(
                    run_id, [DatasetInput(dataset, [InputTag("mlflow.data.context", "training")])]
                )

    def _log_model(
        self,
        experiment_id: str,
        run_id: str,
        name: str,
        model: Any,
        signature: Signature,
        skops_types: list[str],
    ) -> tuple[str, str]:
        """Save the estimator as an MLflow model (sklearn flavour, skops) into a logged model of the run."""
        import mlflow.sklearn
        import sklearn
        import skops
        from mlflow.entities import LoggedModelOutput
        from mlflow.models import Model, ModelSignature
        from mlflow.types import ColSpec, Schema

        client = self._client
        mlflow_signature = ModelSignature(
            inputs=Schema([ColSpec("double", f) for f in signature.feature_names]),
            outputs=Schema([ColSpec("double", signature.target.name)]),
        )
        with self._errors(f"log the model of {name!r}"):
            logged = client.create_logged_model(experiment_id, name=name, source_run_id=run_id)
            with tempfile.TemporaryDirectory(prefix="mlsysops-model-") as tmp:
                path = Path(tmp) / _MODEL_DIR
                mlflow.sklearn.save_model(
                    model,
                    str(path),
                    mlflow_model=Model(
                        artifact_path=logged.artifact_location,
                        model_uuid=logged.model_id,
                        run_id=run_id,
                        model_id=logged.model_id,
                    ),
                    serialization_format="skops",
                    skops_trusted_types=skops_types,
                    signature=mlflow_signature,
                    # stated, not inferred: inference imports the model in a subprocess (seconds)
                    pip_requirements=[f"scikit-learn=={sklearn.__version__}", f"skops=={skops.__version__}"],
                )
                client.log_model_artifacts(logged.model_id, str(path))
            client.finalize_logged_model(logged.model_id, "READY")
            client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, 0)])
        # the artifact location, not models:/<id>: MLflow would resolve that through the global client
        return logged.model_id, logged.artifact_location

    # --- load ---------------------------------------------------------------------------------

    def load_estimator(self, name: str, ref: str = CHAMPION) -> tuple[ModelVersion, Any]:
        """The version `ref` names and its estimator (cached per version: versions never change)."""
        mv = self._resolve(name, ref)
        version = self._version(mv)
        key = (name, version.version, str(mv.run_id))  # the run too: a re-created model restarts at 1
        with self._lock:
            cached = self._estimators.get(key)
        if cached is None:
            cached = self._download_and_load(mv)
            with self._lock:
                self._estimators[key] = cached
        return version, cached

    def load(self, name: str, version_or_alias: str = CHAMPION) -> Predictor:
        # imported here: the predictor (SHAP and all) is needed only by load(), not by the registry
        from mlconnector.predictor import EstimatorPredictor

        version, estimator = self.load_estimator(name, version_or_alias)
        return EstimatorPredictor(version, estimator)

    def _download_and_load(self, mv: Any) -> Any:
        import mlflow.artifacts
        import skops.io
        from mlflow.models import Model

        what = f"version {mv.version} of model {mv.name!r}"
        with tempfile.TemporaryDirectory(prefix="mlsysops-load-") as tmp:
            with self._errors(f"download {what}"):
                local = Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=mv.source, dst_path=tmp, tracking_uri=self.tracking_uri
                    )
                )
                flavor = Model.load(str(local)).flavors.get("sklearn")
            if not flavor or flavor.get("serialization_format") != "skops":
                raise RegistryError(
                    f"{what} is not a scikit-learn model saved with skops: refusing to load it"
                )
            path = local / flavor["pickled_model"]
            try:
                types = trusted_types(list(skops.io.get_untrusted_types(file=path)))
                return skops.io.load(path, trusted=types)
            except RegistryError as e:
                raise RegistryError(f"{what}: {e}") from None
            except Exception as e:
                raise RegistryError(f"{what} cannot be loaded: {type(e).__name__}: {e}") from None

    # --- aliases, promote, rollback -----------------------------------------------------------

    def set_alias(self, name: str, alias: str, version: str) -> ModelVersion:
        """Point `alias` at a version. `champion` goes through promote (so rollback knows the one it
        replaced); `previous-champion` is the registry's own, derived from the champion history."""
        if not alias or alias.isdigit():
            raise RegistryError(f"invalid alias {alias!r}: an alias is a name, not a version number")
        if alias == CHAMPION:
            return self.promote(name, version)
        if alias == PREVIOUS_CHAMPION:
            raise RegistryError(f"alias {PREVIOUS_CHAMPION!r} is set by promote and rollback, not directly")
        target = self._resolve(name, str(version))
        with self._errors(f"set alias {alias!r} of model {name!r}"):
            self._client.set_registered_model_alias(name, alias, str(target.version))
        return self.get(name, str(target.version))

    def promote(self, name: str, version: str) -> ModelVersion:
        """Make `version` the champion; the champion it replaces goes on the champion history."""
        target = str(self._resolve(name, str(version)).version)
        current = self.champion_version(name)
        if current == target:
            return self.get(name, target)
        history = self._history(name)
        if current is not None:
            history.append(current)
        self._write_champion(name, target, history)
        log.info("model %s: version %s is champion (was %s)", name, target, current)
        return self.get(name, target)

    def rollback(self, name: str) -> ModelVersion:
        """Make the previous champion the champion again; RegistryError (nothing changed) when none."""
        self._registered(name)
        history = self._history(name)
        if not history:
            raise RegistryError(f"model {name!r} has no previous champion to roll back to")
        previous = history.pop()
        self._mv(name, previous)  # still there
        self._write_champion(name, previous, history)
        log.info("model %s: rolled back to version %s", name, previous)
        return self.get(name, previous)

    def _history(self, name: str) -> list[str]:
        return codec.decode_history(dict(self._registered(name).tags or {}).get(codec.CHAMPION_HISTORY_TAG))

    def _write_champion(self, name: str, champion: str, history: list[str]) -> None:
        client = self._client
        with self._errors(f"move the champion of model {name!r}"):
            client.set_registered_model_tag(name, codec.CHAMPION_HISTORY_TAG, codec.encode_history(history))
            client.set_registered_model_alias(name, CHAMPION, champion)
            if history:
                client.set_registered_model_alias(name, PREVIOUS_CHAMPION, history[-1])
            else:
                with contextlib.suppress(Exception):
                    client.delete_registered_model_alias(name, PREVIOUS_CHAMPION)
