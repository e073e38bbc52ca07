"""The Feast feature store of an environment: the repo in `features/`, its `feature_store[.<env>].yaml`,
the registry in PostgreSQL and the online store in the stack's Redis.

    feature_store(settings)        the FeatureStore (the calling process's Spark session is its offline engine)
    apply_definitions(store)       registers features/*.py's entities, sources, views and services
    materialize(store, end)        offline (Delta) -> online (Redis), incrementally per view

Feast reads the yaml itself; the `${LAKEHOUSE_FEAST_*}` variables in it come from the settings here, so
conf/*.yaml stays the one place for ports, databases and the project name. Feast is imported lazily: it
takes seconds to import and sets a session-wide Spark flag (undone by `feast_call`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lakehouse.common.config import Settings, project_root

log = logging.getLogger(__name__)

REPO_MODULES = ("features.entities", "features.data_sources", "features.feature_views", "features.feature_services")
FEATURE_SERVICE = "fraud_detection_v1"


def repo_dir() -> Path:
    return project_root() / "features"


def yaml_file(settings: Settings) -> Path:
    """features/feature_store.yaml for `local`, features/feature_store.<env>.yaml for the others."""
    name = "feature_store.yaml" if settings.env == "local" else f"feature_store.{settings.env}.yaml"
    path = repo_dir() / name
    if not path.is_file():
        raise FileNotFoundError(f"env {settings.env}: the Feast repo has no {path}")
    return path


def feast_environment(settings: Settings) -> dict[str, str]:
    """The values of the yaml's `${LAKEHOUSE_FEAST_*}` variables."""
    from lakehouse.oltp.db import sqlalchemy_url

    return {"LAKEHOUSE_FEAST_PROJECT": settings.features.project,
            "LAKEHOUSE_FEAST_REGISTRY": sqlalchemy_url(settings, settings.features.registry_database),
            "LAKEHOUSE_FEAST_REDIS": f"{settings.services.host}:{settings.services.redis.port}"}


@contextlib.contextmanager
def feast_call() -> Iterator[None]:
    """Around any Feast call: its progress prints go to stderr (stdout carries --json output), its
    "experimental" warnings are silenced, and the Spark flag it turns on for good
    (`spark.sql.parser.quotedRegexColumnNames`, which makes a back-quoted column name a regex) is
    turned off again."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning)
        try:
            yield
        finally:
            from pyspark.sql import SparkSession

            spark = SparkSession.getActiveSession()
            if spark is not None:
                spark.conf.set("spark.sql.parser.quotedRegexColumnNames", "false")


def feature_store(settings: Settings) -> Any:
    """The environment's FeatureStore; creates the registry's database on the local stack when missing."""
    from lakehouse.oltp.db import ensure_database

    ensure_database(settings, settings.features.registry_database, "features.registry_database")
    os.environ.update(feast_environment(settings))
    with feast_call():
        from feast import FeatureStore

        return FeatureStore(repo_path=str(repo_dir()), fs_yaml_file=yaml_file(settings))


def definitions() -> list[Any]:
    """Every Feast object defined in features/*.py (entities, sources, views, services), once each."""
    from feast import Entity, FeatureService, FeatureView
    from feast.data_source import DataSource

    root = str(project_root())
    if root not in sys.path:
        sys.path.insert(0, root)
    found: list[Any] = []
    for name in REPO_MODULES:
        module = importlib.import_module(name)
        for attr in sorted(vars(module)):
            obj = getattr(module, attr)
            if isinstance(obj, Entity | DataSource | FeatureView | FeatureService) and not any(
                    obj is seen for seen in found):
                found.append(obj)
    return found


def feature_views() -> list[Any]:
    from feast import FeatureView

    return [o for o in definitions() if isinstance(o, FeatureView)]


def stream_view_names() -> set[str]:
    from feast.data_source import PushSource

    return {v.name for v in feature_views() if isinstance(v.stream_source, PushSource)}


def apply_definitions(store: Any) -> list[str]:
    """Registers the repo's objects (idempotent); returns their names."""
    objects = definitions()
    with feast_call():
        store.apply(objects)
    return [o.name for o in objects]


def materialize(store: Any, end: dt.datetime, progress: Any = log.info) -> dict[str, float]:
    """Loads each batch view's newest values up to `end` into Redis, from where the previous run ended
    (the first time: from `end` - the view's TTL); returns seconds per view. Push views are written by
    the streaming job, not here.

    A view's first run is an explicit `materialize(end - TTL, end)`: Feast's `materialize_incremental`
    would start it at *now* - TTL (feast 0.67, feature_store.py), which leaves out the rows between
    end - TTL and the moment of the call, rows the point-in-time join as of `end` does see. With `end` =
    the job's start, that is the seconds the feature tables took to build; a check as of `end` (the skew
    check) then finds the entities whose latest row fell in them missing online."""
    import time

    timings: dict[str, float] = {}
    pushed = stream_view_names()
    for view in feature_views():
        if view.name in pushed:
            continue
        started = time.monotonic()
        with feast_call():
            if store.get_feature_view(view.name).most_recent_end_time is None:
                store.materialize(start_date=end - view.ttl, end_date=end, feature_views=[view.name])
            else:
                store.materialize_incremental(end_date=end, feature_views=[view.name])
        timings[view.name] = round(time.monotonic() - started, 1)
        progress(f"features: {view.name} materialized to {end:%Y-%m-%d %H:%M:%S} in {timings[view.name]:.1f}s")
    return timings
