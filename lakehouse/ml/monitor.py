"""`lakehouse ml monitor`: is the champion still fit for its data? Drift and delayed-label performance
into gold.ml_monitoring, and whether a retrain is recommended.

    reference   the champion's training run: evaluation/train_sample.parquet (raw inputs + score), its
                test average precision
    recent      the payments the champion batch-scored in the last `days` days before the latest one,
                their raw features recomputed point in time (Feast), their stored scores
    labelled    the champion's batch-scored payments at least ml.label_delay_days older than silver's
                latest payment (their labels have arrived), with silver.fraud_ground_truth

    feature_drift     PSI of every model input (INPUT_COLUMNS), reference vs recent  > ml.psi_threshold
    score_drift       PSI of the score                                                > ml.psi_threshold
    performance       average precision, precision, recall, cost per payment at the model's threshold;
                      AP more than ml.performance_drop (a share) below the training run's test AP
    retrain_decision  any of the above breached -> a retrain is recommended, with the reasons

The checks are pure (pandas / numpy); `monitor` does the I/O and appends one row per check.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from lakehouse.common.config import Settings
from lakehouse.ml.inputs import INPUT_COLUMNS, model_inputs
from lakehouse.ml.metrics import expected_cost, psi
from lakehouse.ml.tables import ML_MONITORING, PAYMENT_SCORES

log = logging.getLogger(__name__)

FEATURE_PSI, SCORE_PSI, PERFORMANCE, RETRAIN = "feature_psi", "score_psi", "performance", "retrain"
KINDS = (FEATURE_PSI, SCORE_PSI, PERFORMANCE, RETRAIN)
REFERENCE_AP_METRIC = "test_average_precision"


@dataclass(frozen=True)
class Check:
    """One measure of a monitoring run. `value` is NaN when it could not be measured (never breached);
    `threshold` is the limit `breached` compares against (None: informational)."""

    kind: str
    name: str
    value: float
    threshold: float | None
    breached: bool
    detail: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"check {self.name!r}: unknown kind {self.kind!r}; expected one of {KINDS}")


def _mean(values: np.ndarray) -> str:
    finite = values[~np.isnan(values)]
    return f"{float(finite.mean()):.4g}" if finite.size else "n/a"


def _psi_check(kind: str, name: str, reference: Any, recent: Any, threshold: float) -> Check:
    """PSI of `recent` against `reference`; NaN (not breached) when either side has no values."""
    ref = np.asarray(reference, dtype=float)
    rec = np.asarray(recent, dtype=float)
    if ref.size == 0 or rec.size == 0:
        return Check(kind, name, math.nan, threshold, False,
                     f"not measured: {ref.size:,} training and {rec.size:,} recent values")
    value = psi(ref, rec)
    breached = value > threshold
    missing_ref, missing_rec = float(np.isnan(ref).mean()), float(np.isnan(rec).mean())
    missing = f", missing {missing_ref:.1%} -> {missing_rec:.1%}" if missing_ref or missing_rec else ""
    detail = (f"PSI {value:.4f} {'>' if breached else '<='} {threshold:g}; mean {_mean(ref)} -> {_mean(rec)}"
              f"{missing} ({ref.size:,} training vs {rec.size:,} recent values)")
    return Check(kind, name, value, threshold, breached, detail)


def feature_drift(reference: pd.DataFrame, recent: pd.DataFrame, threshold: float) -> list[Check]:
    """PSI of each model input (INPUT_COLUMNS, in order) between the reference payments and the recent
    ones, both given as raw columns (RAW_COLUMNS; derived here with `model_inputs`, as the model does)."""
    ref, rec = model_inputs(reference), model_inputs(recent)
    return [_psi_check(FEATURE_PSI, c, ref[c].to_numpy(), rec[c].to_numpy(), threshold) for c in INPUT_COLUMNS]


def score_drift(reference_scores: Sequence[float] | np.ndarray, recent_scores: Sequence[float] | np.ndarray,
                threshold: float) -> Check:
    """PSI of the model's scores: the training sample's against the recent payments'."""
    return _psi_check(SCORE_PSI, "score", reference_scores, recent_scores, threshold)


def performance(labels: Sequence[bool] | np.ndarray, scores: Sequence[float] | np.ndarray, model_threshold: float,
                reference_ap: float | None, max_drop: float, cost_missed: float, cost_decline: float) -> list[Check]:
    """The champion on payments whose labels have arrived: average precision (breached when it is more
    than `max_drop`, a share, below `reference_ap`, the training run's test AP), and precision, recall
    and expected cost per payment at the model's threshold (informational). One NaN check when the
    labels do not have both classes yet."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=float)
    n, frauds = len(y), int(y.sum())
    reference = math.nan if reference_ap is None else float(reference_ap)
    floor = reference * (1 - max_drop) if math.isfinite(reference) and reference > 0 else None
    if n == 0 or frauds in (0, n):
        return [Check(PERFORMANCE, "average_precision", math.nan, floor, False,
                      f"labels have not arrived yet: {n:,} scored payments with mature labels ({frauds:,} frauds); "
                      "average precision needs both classes")]
    from sklearn.metrics import average_precision_score

    ap = float(average_precision_score(y, s))
    population = f"{n:,} payments with mature labels, {frauds:,} frauds"
    if floor is not None:
        change = (ap - reference) / reference
        breached = -change > max_drop
        ap_detail = (f"average precision {ap:.4f} vs {reference:.4f} at training: {change:+.1%} "
                     f"(limit -{max_drop:.0%}, i.e. {floor:.4f}); {population}")
    else:
        breached = False
        ap_detail = (f"average precision {ap:.4f}; no reference (the training run has no usable "
                     f"{REFERENCE_AP_METRIC}); {population}")
    declined = s >= model_threshold
    tp, n_declined = int(np.sum(y & declined)), int(declined.sum())
    missed, false_declines = frauds - tp, n_declined - tp
    cost = expected_cost(y, s, model_threshold, cost_missed, cost_decline)
    at = f"score >= {model_threshold:.4f}"
    return [
        Check(PERFORMANCE, "average_precision", ap, floor, breached, ap_detail),
        Check(PERFORMANCE, "precision", tp / n_declined if n_declined else 0.0, None, False,
              f"{tp:,} of {n_declined:,} declined payments were fraud ({at})"),
        Check(PERFORMANCE, "recall", tp / frauds, None, False, f"{tp:,} of {frauds:,} frauds declined ({at})"),
        Check(PERFORMANCE, "cost_per_payment", cost / n, None, False,
              f"{missed:,} missed frauds x {cost_missed:g} + {false_declines:,} declined genuine x {cost_decline:g} "
              f"= {cost:,.2f} over {n:,} payments ({at})"),
    ]


def retrain_decision(checks: Sequence[Check]) -> Check:
    """Kind `retrain`: value 1.0 (breached) when any check breached, with each one's kind, name and
    reason in the detail; 0.0 otherwise. Earlier `retrain` checks in `checks` are ignored."""
    considered = [c for c in checks if c.kind != RETRAIN]
    breached = [c for c in considered if c.breached]
    if breached:
        reasons = " | ".join(f"{c.kind} {c.name}: {c.detail}" for c in breached)
        return Check(RETRAIN, "retrain", 1.0, None, True,
                     f"retrain recommended: {len(breached)} of {len(considered)} checks breached: {reasons}")
    unmeasured = [c.name for c in considered if math.isnan(c.value)]
    note = f" ({len(unmeasured)} not measured: {', '.join(unmeasured)})" if unmeasured else ""
    return Check(RETRAIN, "retrain", 0.0, None, False,
                 f"no retrain: {len(considered)} checks within their thresholds{note}")


def monitoring_rows(checks: Sequence[Check], model_name: str, version: str | None, checked_at: dt.datetime,
                    window_start: dt.datetime | None, window_end: dt.datetime | None) -> list[tuple[Any, ...]]:
    """gold.ml_monitoring rows (ML_MONITORING's column order) of `checks` over one data window."""
    return [(checked_at, model_name, None if version is None else str(version), c.kind, c.name, float(c.value),
             None if c.threshold is None else float(c.threshold), bool(c.breached), window_start, window_end,
             c.detail)
            for c in checks]


def _reference_sample(client: Any, run_id: str, model: str, version: str) -> pd.DataFrame:
    from lakehouse.ml.train import TRAIN_SAMPLE_ARTIFACT

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, TRAIN_SAMPLE_ARTIFACT, tmp)
        except Exception as e:
            raise LookupError(
                f"{model} v{version}: its training run {run_id} has no {TRAIN_SAMPLE_ARTIFACT} (the reference "
                "distribution; runs of lakehouse ml train log it since scoring arrived): train and promote a new "
                f"champion (lakehouse ml train, lakehouse ml promote) ({type(e).__name__}: {e})") from e
        return pd.read_parquet(path)


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def monitor(spark: SparkSession, settings: Settings, days: int = 7,
            progress: Callable[[str], None] = log.info) -> dict[str, Any]:
    """Checks the champion (drift over the last `days` days of its batch scores, performance on its
    scored payments whose labels have arrived), appends the checks to gold.ml_monitoring and returns a
    summary. LookupError when there is no champion, no reference sample or no batch score of it."""
    from delta.tables import DeltaTable

    from lakehouse.common.tables import append, table_path
    from lakehouse.features.jobs import feature_payments, read_silver_table
    from lakehouse.features.store import feature_store
    from lakehouse.ml.dataset import LABEL, with_features
    from lakehouse.ml.model import as_raw_frame
    from lakehouse.ml.registry import CHAMPION, alias_version
    from lakehouse.ml.scoring import BATCH
    from lakehouse.ml.tracking import client as mlflow_client

    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    ml = settings.ml
    name = ml.model_name
    checked_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    client = mlflow_client(settings)
    champion = alias_version(client, name, CHAMPION)
    if champion is None:
        raise LookupError(f"{name} has no {CHAMPION}: train one and promote it (lakehouse ml train, lakehouse ml "
                          "promote)")
    version = str(champion.version)
    run_id = champion.run_id or (champion.tags or {}).get("run_id")
    if not run_id:
        raise LookupError(f"{name} v{version} has no training run: register models with lakehouse ml train")
    reference = _reference_sample(client, run_id, name, version)
    run = client.get_run(run_id)
    reference_ap = float(run.data.metrics.get(REFERENCE_AP_METRIC, math.nan))
    progress(f"ml: monitoring {name} v{version} (run {run_id}): {len(reference):,} training payments as the "
             f"reference, test average precision {reference_ap:.4f}")

    scores_path = table_path(settings, PAYMENT_SCORES.full_name)
    missing_scores = (f"no batch scores of {name} v{version} in {PAYMENT_SCORES.full_name}: score payments with "
                      "the champion first (lakehouse ml score)")
    if not DeltaTable.isDeltaTable(spark, scores_path):
        raise LookupError(missing_scores)
    scored = (spark.read.format("delta").load(scores_path)
              .where((F.col("path") == F.lit(BATCH)) & (F.col("model_version") == F.lit(version)))
              .select("charge_id", "created_at", "score", "threshold"))
    bounds = scored.agg(F.max("created_at").alias("last"), F.max("threshold").alias("threshold")).first()
    if bounds is None or bounds["last"] is None:
        raise LookupError(missing_scores)
    window_end: dt.datetime = bounds["last"]
    window_start = window_end - dt.timedelta(days=days)
    model_threshold = float(run.data.params.get("threshold", bounds["threshold"]))

    # Drift: the recent payments' raw features as the model saw them (point in time) and their stored scores.
    in_window = scored.where((F.col("created_at") >= F.lit(window_start)) & (F.col("created_at") <= F.lit(window_end)))
    payments = feature_payments(spark, settings).join(in_window.select("charge_id"), on="charge_id", how="left_semi")
    recent = as_raw_frame(with_features(feature_store(settings), payments).toPandas())
    stored: pd.DataFrame = in_window.select("score").toPandas()
    recent_scores = stored["score"].to_numpy(dtype=float)
    progress(f"ml: {len(recent):,} payments scored {window_start:%Y-%m-%d %H:%M} .. {window_end:%Y-%m-%d %H:%M} "
             "with their point-in-time features")
    drift = [*feature_drift(reference, recent, ml.psi_threshold),
             score_drift(reference["score"].to_numpy(dtype=float), recent_scores, ml.psi_threshold)]
    drifted = sorted((c for c in drift if c.breached), key=lambda c: -c.value)
    progress(f"ml: {len(drifted)} of {len(drift)} PSI checks above {ml.psi_threshold:g}"
             + (": " + ", ".join(f"{c.name} {c.value:.3f}" for c in drifted[:10]) if drifted else "")
             + f"; score PSI {drift[-1].value:.4f}")

    # Performance: scored payments whose labels have arrived, from the model's held-out test window on (the
    # payments it was trained or thresholded on would flatter it).
    held_out = run.data.params.get("window.test_start")
    held_out_from = dt.datetime.fromisoformat(held_out) if held_out else dt.datetime.min
    silver_last = feature_payments(spark, settings).agg(F.max("created_at").alias("last")).first()
    labels_until = (silver_last["last"] if silver_last is not None and silver_last["last"] is not None
                    else window_end) - dt.timedelta(days=ml.label_delay_days)
    truth = read_silver_table(spark, settings, "fraud_ground_truth", f"charge_id bigint, {LABEL} boolean")
    labelled: pd.DataFrame = (scored.where((F.col("created_at") <= F.lit(labels_until))
                                           & (F.col("created_at") >= F.lit(held_out_from)))
                              .join(truth.where(F.col(LABEL).isNotNull()), on="charge_id", how="inner")
                              .select("created_at", "score", LABEL).toPandas())
    perf = performance(labelled[LABEL].astype(bool).to_numpy(), labelled["score"].to_numpy(dtype=float),
                       model_threshold, reference_ap, ml.performance_drop, ml.cost_missed_fraud,
                       ml.cost_false_decline)
    labels_from = pd.Timestamp(labelled["created_at"].min()).to_pydatetime() if len(labelled) else None
    progress(f"ml: performance on {len(labelled):,} payments created until {labels_until:%Y-%m-%d %H:%M} "
             f"(labels after {ml.label_delay_days} days): {perf[0].detail}")

    decision = retrain_decision([*drift, *perf])
    rows = [*monitoring_rows([*drift, decision], name, version, checked_at, window_start, window_end),
            *monitoring_rows(perf, name, version, checked_at, labels_from, labels_until)]
    append(spark.createDataFrame(rows, ML_MONITORING.schema), settings, ML_MONITORING)
    breached = [c.name for c in [*drift, *perf] if c.breached]
    verdict = f"retrain recommended ({', '.join(breached)})" if decision.breached else decision.detail
    progress(f"ml: {verdict}; {len(rows)} rows appended to {ML_MONITORING.full_name}")
    return {"model_name": name, "model_version": version, "run_id": run_id, "checks": len(rows),
            "breached": breached, "retrain": decision.breached, "reason": decision.detail,
            "window": {"start": _iso(window_start), "end": _iso(window_end)},
            "labels_window": {"start": _iso(labels_from), "end": _iso(labels_until)},
            "reference_payments": len(reference), "recent_payments": len(recent), "labelled_payments": len(labelled),
            "labelled_frauds": int(labelled[LABEL].astype(bool).sum()) if len(labelled) else 0,
            "average_precision": _finite(perf[0].value), "reference_average_precision": _finite(reference_ap)}
