"""The model registry: `challenger` on registration, `champion` only through the promotion gate.

`promote` scores the challenger and the current champion on the challenger's held-out test window (the
payments, features and labels its training run logged), each with its own threshold, and moves
`champion` only when the challenger beats it on `ml.promote_metric` by at least `ml.promote_margin`.
Either way the evidence (both models' metrics side by side) goes to a `promotion` run in the experiment
(metrics, tags and a Markdown report: the one page a reviewer opens), to tags on the challenger's
version, and to `ops.model_alias_history`, since the registry keeps only the current aliases.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.common.tables import append
from lakehouse.ml.dataset import LABEL
from lakehouse.ml.inputs import RAW_COLUMNS
from lakehouse.ml.metrics import Evaluation, evaluate
from lakehouse.ml.tables import MODEL_ALIAS_HISTORY
from lakehouse.ml.train import TEST_ARTIFACT

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"


class PromotionError(RuntimeError):
    """Nothing to promote (no challenger), or the challenger's evidence is missing."""


def record_alias_change(spark: SparkSession, settings: Settings, model: str, alias: str, action: str,
                        from_version: str | None, to_version: str | None, reason: str,
                        evidence: dict[str, Any] | None = None, run_id: str | None = None) -> None:
    """Appends one row to ops.model_alias_history."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    from_version = None if from_version is None else str(from_version)     # the registry gives ints or strings
    to_version = None if to_version is None else str(to_version)
    row = [(now, model, alias, action, from_version, to_version, reason,
            json.dumps(evidence or {}, sort_keys=True, default=str), run_id)]
    append(spark.createDataFrame(row, MODEL_ALIAS_HISTORY.schema), settings, MODEL_ALIAS_HISTORY)


def alias_version(client: Any, model: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model, alias)
    except MlflowException:
        return None


def register_challenger(spark: SparkSession, settings: Settings, model_uri: str, run_id: str, reason: str,
                        model_name: str | None = None) -> str:
    """Registers `model_uri` as a new version of the model and points `challenger` at it; returns the version."""
    import mlflow

    from lakehouse.ml.tracking import client as mlflow_client

    name = model_name or settings.ml.model_name
    client = mlflow_client(settings)
    previous = alias_version(client, name, CHALLENGER)
    version = mlflow.register_model(model_uri, name, tags={"run_id": run_id}).version
    client.set_registered_model_alias(name, CHALLENGER, version)
    record_alias_change(spark, settings, name, CHALLENGER, "set", previous.version if previous else None,
                        str(version), reason, run_id=run_id)
    return str(version)


@dataclass(frozen=True)
class Promotion:
    promoted: bool
    reason: str
    metric: str
    challenger_version: str
    champion_version: str | None
    challenger: dict[str, float]
    champion: dict[str, float] | None
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _test_window(client: Any, run_id: str) -> pd.DataFrame:
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = client.download_artifacts(run_id, TEST_ARTIFACT, tmp)
        except Exception as e:
            raise PromotionError(f"run {run_id} has no {TEST_ARTIFACT}: not a training run of lakehouse ml train "
                                 f"({e})") from e
        return pd.read_parquet(path)


def _score(settings: Settings, uri: str, window: pd.DataFrame) -> Evaluation:
    import mlflow

    model = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    scores = model.score_raw(window[list(RAW_COLUMNS)])
    return evaluate(window[LABEL].astype(bool).to_numpy(), scores, model.threshold, settings.ml.cost_missed_fraud,
                    settings.ml.cost_false_decline, window["day"].tolist(), window["payment_method_id"].tolist())


def _better(metric: str, challenger: Evaluation, champion: Evaluation, margin: float) -> tuple[bool, float]:
    """Whether the challenger beats the champion by `margin`, and by how much (positive: better)."""
    if metric == "expected_cost":
        gain = champion.cost_per_payment - challenger.cost_per_payment
    else:
        gain = float(getattr(challenger, metric)) - float(getattr(champion, metric))
    return gain >= margin, gain


def _report(name: str, metric: str, margin: float, challenger_v: str, champion_v: str | None,
            challenger: Evaluation, champion: Evaluation | None, decision: str) -> str:
    lines = [f"# Promotion of {name} version {challenger_v}", "",
             f"Decision: **{decision}**", "",
             f"Gate: challenger's `{metric}` must beat the champion's by at least {margin} on the challenger's "
             "held-out test window (the same payments, features and labels for both; each model at its own "
             "cost-chosen threshold).", "",
             f"| metric | challenger (v{challenger_v}) | champion ({'v' + champion_v if champion_v else 'none'}) |",
             "|---|---|---|"]
    ours, theirs = challenger.as_dict(), champion.as_dict() if champion else {}
    for key, value in ours.items():
        other = theirs.get(key)
        lines.append(f"| {key} | {value:.6g} | {'' if other is None else f'{other:.6g}'} |")
    return "\n".join(lines) + "\n"


def promote(spark: SparkSession, settings: Settings, model_name: str | None = None,
            version: str | None = None) -> Promotion:
    """The gate: `champion` moves to the challenger (or `version`) only when it beats the current champion
    on the same held-out window by the configured margin; the first champion needs no comparison."""
    import mlflow

    from lakehouse.ml.tracking import client as mlflow_client
    from lakehouse.ml.tracking import use_tracking

    name = model_name or settings.ml.model_name
    client = mlflow_client(settings)
    challenger = client.get_model_version(name, version) if version else alias_version(client, name, CHALLENGER)
    if challenger is None:
        raise PromotionError(f"{name} has no challenger: train one first (lakehouse ml train)")
    champion = alias_version(client, name, CHAMPION)
    ours_v = str(challenger.version)                 # the registry gives ints or strings
    theirs_v = str(champion.version) if champion is not None else None
    if champion is not None and theirs_v == ours_v:
        raise PromotionError(f"{name} version {ours_v} already is the champion")
    window = _test_window(client, challenger.run_id)
    metric, margin = settings.ml.promote_metric, settings.ml.promote_margin
    ours = _score(settings, f"models:/{name}/{ours_v}", window)
    theirs = _score(settings, f"models:/{name}/{theirs_v}", window) if champion else None
    if theirs is None or champion is None:
        promoted, reason = True, "no champion yet: the first model becomes the champion"
    else:
        promoted, gain = _better(metric, ours, theirs, margin)
        verdict = "beats" if promoted else "does not beat"
        reason = (f"challenger v{ours_v} {verdict} champion v{theirs_v} on {metric} by "
                  f"{gain:+.6f} (margin {margin}) over {ours.payments:,} held-out payments")
    decision = "promoted" if promoted else "refused"
    experiment_id = use_tracking(settings)
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"promotion {name} v{ours_v}") as run:
        mlflow.set_tags({"kind": "promotion", "decision": decision, "model_name": name,
                         "challenger_version": ours_v,
                         "champion_version": theirs_v or "none",
                         "mlflow.note.content": reason})
        mlflow.log_params({"metric": metric, "margin": margin, "test_window_run": challenger.run_id})
        mlflow.log_metrics({f"challenger_{k}": v for k, v in ours.as_dict().items()})
        if theirs is not None:
            mlflow.log_metrics({f"champion_{k}": v for k, v in theirs.as_dict().items()})
        with tempfile.TemporaryDirectory() as tmp:
            report = Path(tmp) / "promotion.md"
            report.write_text(_report(name, metric, margin, ours_v,
                                      theirs_v, ours, theirs, f"{decision}: {reason}"))
            mlflow.log_artifact(str(report))
        run_id = run.info.run_id
    client.set_model_version_tag(name, ours_v, "promotion", f"{decision}: {reason}")
    client.set_model_version_tag(name, ours_v, "promotion_run", run_id)
    evidence = {"metric": metric, "margin": margin, "challenger": ours.as_dict(),
                "champion": theirs.as_dict() if theirs else None}
    if promoted:
        client.set_registered_model_alias(name, CHAMPION, ours_v)
        if alias_version(client, name, CHALLENGER) is not None:
            client.delete_registered_model_alias(name, CHALLENGER)
        record_alias_change(spark, settings, name, CHAMPION, "moved", theirs_v,
                            ours_v, reason, evidence, run_id)
    else:
        record_alias_change(spark, settings, name, CHAMPION, "refused", theirs_v,
                            theirs_v, reason, evidence, run_id)
    return Promotion(promoted, reason, metric, ours_v, theirs_v,
                     ours.as_dict(), theirs.as_dict() if theirs else None, run_id)
