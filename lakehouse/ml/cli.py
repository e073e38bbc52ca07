"""The `lakehouse ml train | promote | score | monitor | churn | serve | history` verbs (docs/ml.md).

The Spark verbs run as jobs (recorded in ops.job_runs, the same as `lakehouse run <job>` and
`spark-submit jobs/<job>.py`); their own options (`--kinds`, `--version`, `--since`, `--days`) pass through.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable

from lakehouse.common.config import Settings

JOB_VERBS = {"train": "train", "promote": "promote", "score": "score", "monitor": "monitor", "churn": "churn"}


def add_parsers(sub: argparse._SubParsersAction, settings_of: Callable[[argparse.Namespace], Settings]) -> None:
    ml = sub.add_parser("ml", help="fraud models: train, promote (gate), score, monitor, serve; churn model")
    msub = ml.add_subparsers(dest="ml_action", required=True)
    helps = {"train": "point-in-time training set from Feast; gradient-boosted trees and a logistic baseline logged to "
                      "MLflow; the better becomes the challenger (--kinds)",
             "promote": "challenger -> champion only if it beats the champion on the same held-out window by "
                        "ml.promote_margin; evidence on an MLflow run and in ops.model_alias_history (--version)",
             "score": "batch-score payments with the champion into gold.fact_payment_scores (--since, --alias)",
             "monitor": "feature and score drift (PSI), delayed-label performance -> gold.ml_monitoring (--days)",
             "churn": "train, register and batch-score the subscription churn model"}
    for verb, text in helps.items():
        p = msub.add_parser(verb, help=text, description=text + ". Options of the job (see `lakehouse run "
                            f"{JOB_VERBS[verb]} --help`) pass through.")
        p.set_defaults(func=lambda args, rest, verb=verb: cmd_job(args, rest, JOB_VERBS[verb]))

    p = msub.add_parser("serve", help="HTTP scoring endpoint: POST /score (a payment as JSON) -> decision; "
                                      "GET /health")
    p.add_argument("--port", type=int, help="port (default ml.serve_port)")
    p.set_defaults(func=lambda args, rest: cmd_serve(settings_of(args), args.port))

    p = msub.add_parser("history", help="the alias changes and gate decisions of a model (ops.model_alias_history)")
    p.add_argument("--model", help="registered model name (default ml.model_name)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=lambda args, rest: cmd_history(settings_of(args), args.model, args.json))


def cmd_job(args: argparse.Namespace, rest: list[str], job: str) -> int:
    from lakehouse.common.jobs import run_job

    passthrough = ([f"--env={args.env}"] if args.env else []) + [f"--set={s}" for s in args.set]
    return run_job(job, passthrough + rest)


def cmd_serve(settings: Settings, port: int | None) -> int:
    import time

    from lakehouse.ml.serve import Scorer, make_server

    started = time.monotonic()
    scorer = Scorer(settings)
    server = make_server(scorer, port or settings.ml.serve_port, settings.services.host)
    host, bound = str(server.server_address[0]), server.server_address[1]
    print(f"serving {settings.ml.model_name} v{scorer.model_version} on http://{host}:{bound}/score "
          f"(ready in {time.monotonic() - started:.1f}s; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_history(settings: Settings, model: str | None, as_json: bool) -> int:
    from pyspark.sql import functions as F

    from lakehouse.common.spark import get_spark
    from lakehouse.common.tables import table_path
    from lakehouse.ml.tables import MODEL_ALIAS_HISTORY

    spark = get_spark(settings, app_name="lakehouse-ml-history")
    path = table_path(settings, MODEL_ALIAS_HISTORY.full_name)
    from delta.tables import DeltaTable

    if not DeltaTable.isDeltaTable(spark, path):
        print("no alias changes recorded yet (lakehouse ml train registers the first challenger)")
        return 0
    rows = [r.asDict() for r in spark.read.format("delta").load(path)
            .where(F.col("model_name") == F.lit(model or settings.ml.model_name)).orderBy("changed_at").collect()]
    if as_json:
        print(json.dumps(rows, indent=2, default=str))
        return 0
    for r in rows:
        versions = f"{r['from_version'] or '-'!s:>4} -> {r['to_version'] or '-'!s:<4}"
        print(f"{r['changed_at']:%Y-%m-%d %H:%M:%S}  {r['alias']:<10} {r['action']:<7} {versions} {r['reason']}")
    return 0
