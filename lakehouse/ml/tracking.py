"""MLflow for an environment: the PostgreSQL backend store (`ml.tracking_database`), a local artifact
directory, the experiment. MLflow is imported lazily (seconds)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from lakehouse.common.config import Settings

log = logging.getLogger(__name__)

PIP_REQUIREMENTS = ["mlflow==3.17.2", "scikit-learn==1.9.1", "pandas==2.3.3", "numpy==2.4.6", "cloudpickle"]


def tracking_uri(settings: Settings) -> str:
    from lakehouse.oltp.db import sqlalchemy_url

    return sqlalchemy_url(settings, settings.ml.tracking_database)


def use_tracking(settings: Settings, experiment: str | None = None) -> str:
    """Points MLflow at the environment's backend store (creating its database on the local stack) and
    the experiment (creating it with the artifact directory); returns the experiment id."""
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")     # no progress bars in job output
    import mlflow

    from lakehouse.oltp.db import ensure_database

    ensure_database(settings, settings.ml.tracking_database, "ml.tracking_database")
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.utils.requirements_utils"):
        logging.getLogger(name).setLevel(logging.WARNING)
    mlflow.set_tracking_uri(tracking_uri(settings))
    mlflow.set_registry_uri(tracking_uri(settings))
    name = experiment or settings.ml.experiment
    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    artifacts = settings.mlflow_artifact_dir
    if "://" not in artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        artifacts = Path(artifacts).as_uri()
    return str(mlflow.create_experiment(name, artifact_location=f"{artifacts.rstrip('/')}/{name}"))


def client(settings: Settings) -> Any:
    from mlflow import MlflowClient

    use_tracking(settings)
    return MlflowClient()
