"""`lakehouse ml train`: point-in-time training sets from Feast, two models, everything logged to MLflow,
the better one registered as `challenger`.

    labelled payments ─ split_windows ─ with_features (Feast, PIT) ─► train | validation | test
      ├─ hist_gradient_boosting (class-weighted)  ┐  fitted on train, threshold by expected cost on
      └─ logistic (imputed, scaled, weighted)     ┘  validation, measured on test
    the better on validation (ml.promote_metric) -> a new version of ml.model_name, alias `challenger`

Each model's run records its parameters, the windows, the metrics of validation and test, PR / ROC
curves and feature importance as images, the Delta versions of every table the set was read from, the
feature service, and the model (pyfunc: raw columns in, score out) with its signature and an input
example; the test window (features, labels) is an artifact too, so the promotion gate can score a
champion on exactly the same payments.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.common.tables import delta_version, table_path
from lakehouse.ml.dataset import LABEL, Windows, labelled_payments, split_windows, with_features
from lakehouse.ml.inputs import INPUT_COLUMNS, RAW_COLUMNS, model_inputs
from lakehouse.ml.metrics import Evaluation, cost_threshold, evaluate
from lakehouse.ml.model import ScoreModel, as_raw_frame, raw_schema

log = logging.getLogger(__name__)

MODEL_KINDS = ("hist_gradient_boosting", "logistic")
TEST_ARTIFACT = "evaluation/test.parquet"
TRAIN_SAMPLE_ARTIFACT = "evaluation/train_sample.parquet"   # the reference distribution of `lakehouse ml monitor`
TRAIN_SAMPLE_ROWS = 20_000
SOURCE_TABLES = ("silver.charges", "silver.fraud_ground_truth", "silver.refunds", "silver.disputes",
                 "gold.feat_payment_windows", "gold.feat_customer_profile", "gold.feat_merchant_daily",
                 "gold.feat_terminal_daily", "gold.feat_card_stream", "gold.feat_customer_stream")
KEEP = ("charge_id", "payment_method_id", "day", LABEL)


@dataclass
class TrainResult:
    windows: dict[str, str]
    rows: dict[str, int]
    frauds: dict[str, int]
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)
    chosen: str = ""
    version: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def make_estimator(kind: str, seed: int) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if kind == "hist_gradient_boosting":
        return HistGradientBoostingClassifier(max_iter=200, learning_rate=0.08, max_leaf_nodes=31,
                                              l2_regularization=1.0, class_weight="balanced", random_state=seed)
    if kind == "logistic":
        return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(),
                             LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed))
    raise ValueError(f"unknown model kind {kind!r}; expected one of {MODEL_KINDS}")


def data_versions(spark: SparkSession, settings: Settings) -> dict[str, int]:
    """The Delta version of every table a training set is read from (-1: the table does not exist)."""
    out = {}
    for name in SOURCE_TABLES:
        version = delta_version(spark, table_path(settings, name))
        out[name] = -1 if version is None else version
    return out


def feature_importance(estimator: Any, inputs: pd.DataFrame, labels: np.ndarray, seed: int) -> pd.Series:
    """Permutation importance (drop in average precision) on a sample of the validation set."""
    from sklearn.inspection import permutation_importance

    sample = inputs.sample(n=min(len(inputs), 5000), random_state=seed)
    result = permutation_importance(estimator, sample.to_numpy(), labels[inputs.index.get_indexer(sample.index)],
                                    scoring="average_precision", n_repeats=3, random_state=seed)
    return pd.Series(result.importances_mean, index=list(INPUT_COLUMNS)).sort_values(ascending=False)


def _figures(labels: np.ndarray, scores: np.ndarray, importance: pd.Series, title: str) -> dict[str, Any]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    curves, (pr, roc) = plt.subplots(1, 2, figsize=(10, 4))
    precision, recall, _ = precision_recall_curve(labels, scores)
    pr.plot(recall, precision)
    pr.set(xlabel="recall", ylabel="precision", title=f"PR, test window ({title})")
    fpr, tpr, _ = roc_curve(labels, scores)
    roc.plot(fpr, tpr)
    roc.plot([0, 1], [0, 1], linestyle="--", color="grey")
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test window")
    curves.tight_layout()
    top = importance.head(20)[::-1]
    bars, ax = plt.subplots(figsize=(7, 6))
    ax.barh(top.index, top.values)
    ax.set(xlabel="drop in average precision when shuffled", title=f"feature importance ({title})")
    bars.tight_layout()
    return {"plots/pr_roc_test.png": curves, "plots/feature_importance.png": bars}


def training_frames(spark: SparkSession, settings: Settings, store: Any, progress: Callable[[str], None]
                    ) -> tuple[Windows, dict[str, pd.DataFrame]]:
    """The labelled payments of the three windows with their point-in-time features, as pandas frames
    (RAW_COLUMNS + KEEP)."""
    payments = labelled_payments(spark, settings).where(F.col(LABEL).isNotNull())
    bounds = payments.agg(F.min("created_at").alias("first"), F.max("created_at").alias("last")).first()
    if bounds is None or bounds["first"] is None:
        raise ValueError("no labelled payments in silver: run the pipeline (lakehouse demo) or import history first")
    windows = split_windows(bounds["first"], bounds["last"], settings.ml.label_delay_days,
                            settings.ml.validation_days, settings.ml.test_days)
    in_split = payments.where((F.col("created_at") >= F.lit(windows.train_start))
                              & (F.col("created_at") < F.lit(windows.test_end)))
    started = time.monotonic()
    frame: pd.DataFrame = with_features(store, in_split, extra=(LABEL,)).toPandas()
    progress(f"ml: {len(frame):,} payments with point-in-time features in {time.monotonic() - started:.1f}s")
    created = pd.to_datetime(frame["created_at"])
    parts = {"train": (windows.train_start, windows.train_end),
             "validation": (windows.validation_start, windows.validation_end),
             "test": (windows.test_start, windows.test_end)}
    frames = {}
    for name, (lo, hi) in parts.items():
        part = frame[(created >= lo) & (created < hi)].reset_index(drop=True)
        frames[name] = pd.concat([as_raw_frame(part), part[list(KEEP)]], axis=1)
    return windows, frames


def _evaluate(model: ScoreModel, frame: pd.DataFrame, settings: Settings, threshold: float | None = None
              ) -> tuple[Evaluation, np.ndarray]:
    scores = model.score_raw(frame[list(RAW_COLUMNS)])
    labels = frame[LABEL].astype(bool).to_numpy()
    thr = model.threshold if threshold is None else threshold
    return evaluate(labels, scores, thr, settings.ml.cost_missed_fraud, settings.ml.cost_false_decline,
                    frame["day"].tolist(), frame["payment_method_id"].tolist()), scores


def fit(kind: str, frames: dict[str, pd.DataFrame], settings: Settings) -> tuple[ScoreModel, Evaluation, Evaluation]:
    """Fits `kind` on train, picks the cost threshold on validation; evaluations on validation and test."""
    train = frames["train"]
    labels = train[LABEL].astype(bool).to_numpy()
    if labels.sum() == 0 or labels.all():
        raise ValueError(f"the training window has {int(labels.sum())} frauds in {len(labels)} payments: "
                         "both classes are needed (more history, or a shorter ml.label_delay_days)")
    estimator = make_estimator(kind, settings.ml.seed)
    estimator.fit(model_inputs(train[list(RAW_COLUMNS)]).to_numpy(), labels)
    model = ScoreModel(estimator, 0.5, kind)
    validation = frames["validation"]
    val_scores = model.score_raw(validation[list(RAW_COLUMNS)])
    model.threshold = cost_threshold(validation[LABEL].astype(bool).to_numpy(), val_scores,
                                     settings.ml.cost_missed_fraud, settings.ml.cost_false_decline)
    return model, _evaluate(model, validation, settings)[0], _evaluate(model, frames["test"], settings)[0]


def log_model_run(settings: Settings, experiment_id: str, model: ScoreModel, frames: dict[str, pd.DataFrame],
                  windows: Windows, val: Evaluation, test: Evaluation, versions: dict[str, int],
                  extra_params: dict[str, Any] | None = None) -> tuple[str, str]:
    """One MLflow run of a fitted model; returns (run id, logged model URI)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, DataType, Schema

    from lakehouse.features.store import FEATURE_SERVICE
    from lakehouse.ml.tracking import PIP_REQUIREMENTS

    with mlflow.start_run(experiment_id=experiment_id, run_name=model.kind) as run:
        mlflow.log_params({"model_kind": model.kind, "seed": settings.ml.seed, "feature_service": FEATURE_SERVICE,
                           "label_delay_days": settings.ml.label_delay_days,
                           "cost_missed_fraud": settings.ml.cost_missed_fraud,
                           "cost_false_decline": settings.ml.cost_false_decline, "threshold": model.threshold,
                           **{f"window.{k}": v for k, v in windows.as_params().items()},
                           **{f"rows.{k}": len(v) for k, v in frames.items()},
                           **{f"frauds.{k}": int(v[LABEL].sum()) for k, v in frames.items()},
                           **{f"data_version.{k}": v for k, v in versions.items()}, **(extra_params or {})})
        mlflow.set_tags({"feature_service": FEATURE_SERVICE, "model_kind": model.kind,
                         "data_versions": json.dumps(versions, sort_keys=True)})
        mlflow.log_metrics({**{f"validation_{k}": v for k, v in val.as_dict().items()},
                            **{f"test_{k}": v for k, v in test.as_dict().items()}})
        test_frame = frames["test"]
        scores = model.score_raw(test_frame[list(RAW_COLUMNS)])
        val_inputs = model_inputs(frames["validation"][list(RAW_COLUMNS)])
        importance = feature_importance(model.estimator, val_inputs,
                                        frames["validation"][LABEL].astype(bool).to_numpy(), settings.ml.seed)
        for path, fig in _figures(test_frame[LABEL].astype(bool).to_numpy(), scores, importance, model.kind).items():
            mlflow.log_figure(fig, path)
        mlflow.log_dict(importance.round(6).to_dict(), "evaluation/feature_importance.json")
        with tempfile.TemporaryDirectory() as tmp:
            test_path = Path(tmp) / "test.parquet"
            test_frame.assign(score=scores).to_parquet(test_path, index=False)
            mlflow.log_artifact(str(test_path), "evaluation")
            train = frames["train"]
            sample = train.sample(n=min(len(train), TRAIN_SAMPLE_ROWS), random_state=settings.ml.seed)
            sample_path = Path(tmp) / "train_sample.parquet"
            sample.assign(score=model.score_raw(sample[list(RAW_COLUMNS)])).to_parquet(sample_path, index=False)
            mlflow.log_artifact(str(sample_path), "evaluation")
        example = frames["train"][list(RAW_COLUMNS)].head(3)
        signature = ModelSignature(inputs=raw_schema(), outputs=Schema([ColSpec(DataType.double, "score")]))
        info = mlflow.pyfunc.log_model(name="model", python_model=model, signature=signature,
                                       input_example=example, pip_requirements=PIP_REQUIREMENTS)
        return run.info.run_id, info.model_uri


def train(spark: SparkSession, settings: Settings, kinds: tuple[str, ...] = MODEL_KINDS,
          progress: Callable[[str], None] = log.info, register: bool = True) -> TrainResult:
    """Trains `kinds`, logs each to MLflow and registers the better (on validation) as `challenger`."""
    from lakehouse.features.store import feature_store
    from lakehouse.ml.registry import register_challenger
    from lakehouse.ml.tracking import use_tracking

    started = time.monotonic()
    store = feature_store(settings)
    windows, frames = training_frames(spark, settings, store, progress)
    result = TrainResult(windows.as_params(), {k: len(v) for k, v in frames.items()},
                         {k: int(v[LABEL].sum()) for k, v in frames.items()})
    result.seconds["training_set"] = round(time.monotonic() - started, 1)
    progress(f"ml: split {json.dumps(result.rows)}, frauds {json.dumps(result.frauds)}")
    experiment_id = use_tracking(settings)
    versions = data_versions(spark, settings)
    best: tuple[float, str, str] | None = None
    for kind in kinds:
        t0 = time.monotonic()
        model, val, test = fit(kind, frames, settings)
        run_id, uri = log_model_run(settings, experiment_id, model, frames, windows, val, test, versions)
        result.runs[kind] = {"run_id": run_id, "model_uri": uri, "validation": val.as_dict(), "test": test.as_dict()}
        result.seconds[kind] = round(time.monotonic() - t0, 1)
        key = _metric(val, settings.ml.promote_metric)
        progress(f"ml: {kind}: validation {settings.ml.promote_metric} {getattr(val, settings.ml.promote_metric):.4f}; "
                 f"test AP {test.average_precision:.4f}, ROC AUC {test.roc_auc:.4f}, precision {test.precision:.3f} "
                 f"/ recall {test.recall:.3f} at {test.threshold:.3f} ({result.seconds[kind]:.0f}s, run {run_id})")
        if best is None or key > best[0]:
            best = (key, kind, uri)
    assert best is not None
    result.chosen = best[1]
    if register:
        result.version = register_challenger(spark, settings, best[2], result.runs[best[1]]["run_id"],
                                             f"trained: best of {', '.join(kinds)} on validation "
                                             f"{settings.ml.promote_metric}")
        progress(f"ml: {settings.ml.model_name} version {result.version} ({best[1]}) is the challenger")
    result.seconds["total"] = round(time.monotonic() - started, 1)
    return result


def _metric(evaluation: Evaluation, name: str) -> float:
    """A metric oriented so that larger is better."""
    value = float(getattr(evaluation, "cost_per_payment" if name == "expected_cost" else name))
    return -value if name == "expected_cost" else value
