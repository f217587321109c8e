"""MLflow tracking and registry: one experiment, the `lead_scoring` model, aliases.

Aliases, not stages (deprecated in MLflow 3): `champion` is what scores, `challenger` is the
latest candidate. Rolling back is pointing `champion` at an older version.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from mlsys.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


class NoChampionError(RuntimeError):
    pass


def configure(settings: Settings) -> str:
    """Point MLflow at the settings' store and make sure the experiment exists."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    if settings.mlflow_tracking_uri.startswith("sqlite:///"):
        db_path = settings.mlflow_tracking_uri.removeprefix("sqlite:///")
        os.makedirs(os.path.dirname(db_path) or ".", exist_ok=True)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    # `models:/` URIs resolve against the registry URI, a separate process-wide setting: pin
    # it too, or a process that switched homes (a test session, a long-lived server) could
    # load version N of another store's model.
    mlflow.set_registry_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.get_experiment_by_name(settings.experiment_name)
    if experiment is None:
        settings.mlflow_artifact_root.mkdir(parents=True, exist_ok=True)
        location = None
        if "://" not in settings.mlflow_tracking_uri or settings.mlflow_tracking_uri.startswith("sqlite"):
            location = settings.mlflow_artifact_root.as_uri()
        experiment_id = mlflow.create_experiment(settings.experiment_name, artifact_location=location)
    else:
        experiment_id = experiment.experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return str(experiment_id)


def client(settings: Settings) -> Any:
    from mlflow import MlflowClient

    configure(settings)
    return MlflowClient(tracking_uri=settings.mlflow_tracking_uri, registry_uri=settings.mlflow_tracking_uri)


def alias_version(settings: Settings, alias: str) -> Any | None:
    """The model version holding `alias`, or None when no version does."""
    from mlflow.exceptions import MlflowException

    try:
        return client(settings).get_model_version_by_alias(settings.model_name, alias)
    except MlflowException as exc:
        if (
            "RESOURCE_DOES_NOT_EXIST" in str(getattr(exc, "error_code", ""))
            or "not found" in str(exc).lower()
            or "does not exist" in str(exc).lower()
        ):
            return None
        raise


@dataclass
class LoadedModel:
    model: Any
    name: str
    version: str
    metadata: dict[str, Any]
    run_id: str | None

    @property
    def numeric(self) -> list[str]:
        return list(self.metadata.get("features", {}).get("numeric", []))

    @property
    def categorical(self) -> list[str]:
        return list(self.metadata.get("features", {}).get("categorical", []))

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical


def load_version(settings: Settings, version: str) -> LoadedModel:
    import mlflow
    import mlflow.sklearn

    configure(settings)
    mv = client(settings).get_model_version(settings.model_name, version)
    # Load from the version's own source (a logged-model id, unique across stores), not from
    # `models:/<name>/<version>`: MLflow resolves and caches that name per process, so after
    # a process has touched another store's version N it would load that one again.
    uri = str(mv.source)
    model = mlflow.sklearn.load_model(uri)
    info = mlflow.models.get_model_info(uri)
    return LoadedModel(model, settings.model_name, str(version), dict(info.metadata or {}), mv.run_id)


def load_champion(settings: Settings) -> LoadedModel:
    """The model holding `champion` now, pinned by version for the rest of the run."""
    version = alias_version(settings, CHAMPION)
    if version is None:
        raise NoChampionError(
            f"no version of model {settings.model_name!r} holds the {CHAMPION!r} alias in "
            f"{settings.mlflow_tracking_uri}: run `airflow dags trigger retrain` "
            "(or `mlsys train`) first"
        )
    log.info("champion is %s version %s", settings.model_name, version.version)
    return load_version(settings, str(version.version))


def set_alias(settings: Settings, alias: str, version: str) -> None:
    client(settings).set_registered_model_alias(settings.model_name, alias, str(version))
