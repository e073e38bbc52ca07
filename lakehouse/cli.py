"""The `lakehouse` command line: stack, sql, query, run, demo, config, jobs.

Spark and the services are imported only by the verbs that need them, so `--help` and
`stack status` stay fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import decimal
import json
import sys
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lakehouse.common.config import ConfigError, Settings, as_dict, load_settings, parse_overrides
from lakehouse.common.jobs import JOBS, add_common_options

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from lakehouse.gold.querypack import Param, Query


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(args.env, parse_overrides(args.set))


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)  # exact: never through a float
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value)


# --- stack -------------------------------------------------------------------------------------
def cmd_stack(args: argparse.Namespace) -> int:
    from lakehouse.stack import stack

    settings = _settings(args)
    if args.action == "up":
        stack.up(settings, only=args.only, with_replica=args.with_replica)
        print(_status_table(stack.status(settings)))
        return 0
    if args.action == "down":
        stack.down(settings, purge=args.purge)
        return 0
    rows = stack.status(settings)
    if args.json:
        print(json.dumps({"env": settings.env, "state_dir": str(settings.state_dir), "services": rows}, indent=2))
    else:
        print(_status_table(rows))
    return 0 if all(r["healthy"] for r in rows) else 1


def _status_table(rows: list[dict[str, Any]]) -> str:
    w = max([9, *(len(r["service"]) for r in rows)])  # 9, or wider for `postgres-replica`
    lines = [f"{'service':<{w}} {'host':<10} {'port':>6} {'pid':>8}  {'health':<9} detail"]
    for r in rows:
        health = "healthy" if r["healthy"] else "DOWN"
        pid = r["pid"] or "-"
        lines.append(f"{r['service']:<{w}} {r['host']:<10} {r['port']:>6} {pid:>8}  {health:<9} {r['detail']}")
    return "\n".join(lines)


# --- sql ---------------------------------------------------------------------------------------
def cmd_sql(args: argparse.Namespace) -> int:
    from lakehouse.common.spark import get_spark

    settings = _settings(args)
    spark = get_spark(settings, app_name="lakehouse-sql")
    print_result(spark.sql(args.statement), args.json, args.max_rows)
    return 0


def print_result(df: DataFrame, as_json: bool, max_rows: int) -> None:
    """Every row as a JSON array (`as_json`), else the first `max_rows` as a table and a note when cut."""
    rows = df.limit(max_rows + 1).collect() if not as_json else df.collect()
    columns = df.columns
    if as_json:
        print(json.dumps([r.asDict(recursive=True) for r in rows], default=_json_default))
        return
    print(format_table(columns, [[r[c] for c in columns] for r in rows[:max_rows]]))
    if len(rows) > max_rows:
        print(f"(only the first {max_rows} rows shown; use --max-rows or --json)")


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table; NULL for None, exact decimals."""
    cells = [[("NULL" if v is None else _json_default(v) if not isinstance(v, (str, int, float, bool)) else str(v))
              for v in row] for row in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    rule = "-+-".join("-" * w for w in widths)
    out = [" | ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)), rule]
    out += [" | ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    out.append(f"({len(cells)} row{'s' if len(cells) != 1 else ''})")
    return "\n".join(out)


# --- query ---------------------------------------------------------------------------------------
def cmd_query(args: argparse.Namespace) -> int:
    """A named query from the pack (lakehouse.gold.querypack), or `--list` of them; 2 on bad input."""
    from lakehouse.gold.querypack import QueryError, bind, list_queries, load_query, parse_param_args, run

    try:
        if args.list and (args.name or args.param):
            raise QueryError("--list takes no query name and no --param")
        if args.list:
            return _print_queries(list_queries(), args.json)
        if not args.name:
            raise QueryError("give a query name, or --list to see the queries")
        query = load_query(args.name)
        values = bind(query, parse_param_args(args.param))
    except QueryError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from lakehouse.common.spark import get_spark

    spark = get_spark(_settings(args), app_name="lakehouse-query")
    print_result(run(spark, query, values), args.json, args.max_rows)
    return 0


def _print_queries(queries: list[Query], as_json: bool) -> int:
    if as_json:
        print(json.dumps([{"name": q.name, "description": q.description,
                           "params": [dataclasses.asdict(p) for p in q.params]} for q in queries],
                         default=_json_default))
    else:
        print(format_table(["query", "parameters", "description"],
                           [[q.name, ", ".join(_param_usage(p) for p in q.params), q.description] for q in queries]))
    return 0


def _param_usage(p: Param) -> str:
    """`name type`, then `(required)` or `= default` (NULL when optional without one)."""
    if p.required:
        return f"{p.name} {p.type} (required)"
    default = ("NULL" if p.default is None else str(p.default).lower() if isinstance(p.default, bool)
               else _json_default(p.default))
    return f"{p.name} {p.type} = {default}"


# --- reconcile ---------------------------------------------------------------------------------
def cmd_reconcile(args: argparse.Namespace) -> int:
    from lakehouse.common.spark import get_spark
    from lakehouse.gold.reconcile import reconcile_gold
    from lakehouse.silver.reconcile import reconcile

    settings = _settings(args)
    if args.table and args.layer != "silver":
        print("error: --table names silver tables; use it with --layer silver", file=sys.stderr)
        return 2
    spark = get_spark(settings, app_name="lakehouse-reconcile")
    reports = reconcile(spark, settings, args.table or None) if args.layer in ("silver", "all") else []
    reports += reconcile_gold(spark, settings) if args.layer in ("gold", "all") else []
    ok = all(r.ok for r in reports)
    layer = "the lakehouse" if args.layer == "all" else args.layer
    if args.json:
        print(json.dumps({"ok": ok, "layer": args.layer, "tables": [r.as_dict() for r in reports]}, default=str))
    else:
        print(format_table(["table", "postgres rows", "lakehouse rows", "missing", "extra", "changed", "result"],
                           [[r.table, r.oltp_rows, r.silver_rows, r.missing, r.extra, r.changed,
                             "ok" if r.ok else "DIFFERENT"] for r in reports]))
        for r in reports:
            for kind, keys in r.sample.items():
                print(f"{r.table}: {kind} keys (first {len(keys)}): {', '.join(keys)}")
        print(f"{layer} matches PostgreSQL" if ok else f"{layer} DIFFERS from PostgreSQL")
    return 0 if ok else 1


# --- maintain ----------------------------------------------------------------------------------
def cmd_maintain(args: argparse.Namespace) -> int:
    """OPTIMIZE + VACUUM of the chosen layers' Delta tables (lakehouse.ops.maintain); 2 on a refused
    request (retention under 7 days, unknown table), 1 when a table failed."""
    from lakehouse.ops.maintain import MaintainError, layers_for, validate_retention

    try:
        retain = validate_retention(args.retain_hours)
        layers = layers_for(args.layer)
    except MaintainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    from lakehouse.common.spark import get_spark
    from lakehouse.ops.maintain import maintain

    settings = _settings(args)
    spark = get_spark(settings, app_name="lakehouse-maintain")
    out = sys.stderr if args.json else sys.stdout
    try:
        report = maintain(spark, settings, layers, args.table, retain, args.dry_run,
                          progress=lambda line: print(line, file=out, flush=True))
    except MaintainError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(report.as_dict(), default=_json_default))
    else:
        for t in report.tables:
            for path in t.would_vacuum[:10]:
                print(f"  would delete {path}")
            if len(t.would_vacuum) > 10:
                print(f"  ... and {len(t.would_vacuum) - 10} more in {t.table} (--json lists them all)")
        print(report.summary())
    return 0 if report.ok else 1


# --- run ---------------------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace, rest: list[str]) -> int:
    from lakehouse.common.jobs import run_job

    passthrough = ([f"--env={args.env}"] if args.env else []) + [f"--set={s}" for s in args.set]
    passthrough += ["--once"] if args.once else []
    return run_job(args.job, passthrough + rest)


# --- demo --------------------------------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from lakehouse.bronze.demo import run_bronze_demo
    from lakehouse.cdc import connector as cdc
    from lakehouse.common.spark import get_spark
    from lakehouse.common.tables import read_table
    from lakehouse.gold.demo import run_gold_demo
    from lakehouse.ml.demo import run_features_demo, run_ml_demo
    from lakehouse.oltp.demo import run_oltp_demo
    from lakehouse.ops.selfcheck import run_selfcheck
    from lakehouse.ops.tables import JOB_RUNS, SELFCHECK
    from lakehouse.silver.demo import run_reconcile_demo, run_silver_demo
    from lakehouse.stack import stack

    settings = _settings(args)
    timings: dict[str, float] = {}
    print("== 1/11 local services", flush=True)
    t0 = time.monotonic()
    stack.up(settings)
    timings["stack_up_s"] = time.monotonic() - t0
    services = stack.status(settings)

    print(f"== 2/11 OLTP: schema, {args.days} days of history (first run), {args.live_seconds:.0f}s of live payments",
          flush=True)
    t0 = time.monotonic()
    oltp = run_oltp_demo(settings, args.seed, args.days, args.live_seconds, args.rate)
    timings["oltp_s"] = time.monotonic() - t0

    print("== 3/11 CDC: publication, Debezium connector, snapshot", flush=True)
    t0 = time.monotonic()
    cdc.start(settings, wait=True)
    timings["cdc_s"] = time.monotonic() - t0

    print("== 4/11 Spark + Delta: write a table, read it back by name", flush=True)
    t0 = time.monotonic()
    spark = get_spark(settings, app_name="lakehouse-demo")
    timings["spark_start_s"] = time.monotonic() - t0
    from lakehouse.common.jobs import record_run

    t0 = time.monotonic()
    started = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    run_id = f"demo-{int(time.time())}"
    result = run_selfcheck(spark, settings, run_id=run_id, rows=args.rows, seed=args.seed)
    record_run(spark, settings, run_id, "demo", started, "succeeded" if result.ok else "failed", result.rows,
               dataclasses.asdict(result))
    timings["selfcheck_s"] = time.monotonic() - t0

    print("== 5/11 bronze: Kafka -> bronze Delta (catch up), checked against PostgreSQL", flush=True)
    t0 = time.monotonic()
    bronze = run_bronze_demo(spark, settings)
    timings["bronze_s"] = time.monotonic() - t0

    print("== 6/11 silver: bronze -> silver (catch up: CDC merge, SCD2, conformance, PII protection, quality)",
          flush=True)
    t0 = time.monotonic()
    silver = run_silver_demo(spark, settings)
    timings["silver_s"] = time.monotonic() - t0

    print("== 7/11 reconciliation: silver vs PostgreSQL, every table", flush=True)
    t0 = time.monotonic()
    silver.update(run_reconcile_demo(spark, settings))
    timings["reconcile_s"] = time.monotonic() - t0

    print("== 8/11 gold: star schema and aggregates from silver, reconciled with the OLTP ledger", flush=True)
    t0 = time.monotonic()
    gold = run_gold_demo(spark, settings)
    timings["gold_s"] = time.monotonic() - t0

    print("== 9/11 features: feature tables from silver, Feast registry, Redis; online vs offline skew check",
          flush=True)
    t0 = time.monotonic()
    features = run_features_demo(spark, settings)
    timings["features_s"] = time.monotonic() - t0

    print("== 10/11 models: train (Feast point-in-time set, MLflow), register, promote, batch and online scoring",
          flush=True)
    t0 = time.monotonic()
    ml = run_ml_demo(spark, settings)
    timings["ml_s"] = time.monotonic() - t0

    print("== 11/11 summary", flush=True)
    checks = {"self-check": result.ok, "bronze": bronze["ok"], "silver": silver["ok"], "gold": gold["ok"],
              "features": features["ok"], "models": ml["ok"],
              "services": all(s["healthy"] for s in services)}
    failed = [name for name, passed in checks.items() if not passed]
    ok = not failed
    test = ml["test"]
    print(_status_table(services))
    runs = read_table(spark, JOB_RUNS.full_name).count()
    total = read_table(spark, SELFCHECK.full_name).count()
    print(format_table(
        ["check", "value"],
        [["OLTP charges", f"{oltp['charges']} ({oltp['captured']} captured, {oltp['fraud_charges']} fraud by "
                           "ground truth)"],
         ["OLTP refunds / disputes", f"{oltp['refunds']} / {oltp['disputes']}"],
         ["OLTP ledger entries", oltp["ledger_rows"]],
         ["live payments", f"{oltp['live_committed']} at {oltp['live_rate']}/s, p95 {oltp['live_p95_ms']} ms"],
         ["Delta table", f"{SELFCHECK.full_name} at {settings.lakehouse_dir}/ops/selfcheck"],
         ["rows written / read back", f"{result.rows} / {result.expected_rows} expected"],
         ["sum(amount_minor)", f"{result.sum_minor} / {result.expected_sum_minor} expected"],
         ["rows in table (all runs)", total],
         ["job runs recorded", f"{runs} in {JOB_RUNS.full_name}"],
         ["bronze rows (this run)", f"{bronze['rows_written']:,} into {len(bronze['rows_by_table'])} tables"],
         ["charges bronze / OLTP", f"{bronze['charges_in_bronze']:,} / {bronze['charges_expected']:,}"],
         ["silver changes applied", f"{silver['changes']:,} ({silver['quarantined']:,} quarantined)"],
         ["reconcile silver vs OLTP", f"{silver['tables']} tables, {silver['rows']:,} rows, "
                                      f"{len(silver['differing'])} differing" + (
                                          f": {', '.join(silver['differing'])}" if silver["differing"] else "")],
         ["gold tables / rows", f"{gold['tables']} / {gold['rows']:,}"],
         ["reconcile gold vs ledger", f"{gold['ledger_days']:,} merchant-days, "
                                      + ("net revenue equal" if gold["ledger_ok"] else "DIFFERENT")],
         ["top merchants (net USD)", ", ".join(f"{m} {usd}" for m, usd in gold["top"]) or "none"],
         ["feature tables / rows", f"{features['tables']} / {features['rows']:,}; online vs offline: "
                                   f"{features['skew']['differing']} of {features['skew']['values']:,} values differ"],
         ["champion", f"{ml['model']} v{ml['champion_version']} ({ml['kind']}; "
                      f"{'promoted' if ml['promoted'] else 'gate refused the new version'})"],
         ["champion on test window", f"{int(test['payments']):,} payments, {int(test['frauds'])} frauds: ROC AUC "
                                     f"{test['roc_auc']:.3f}, average precision {test['average_precision']:.3f}, "
                                     f"precision {test['precision']:.3f} / recall {test['recall']:.3f} at "
                                     f"{test['threshold']:.3f}, card precision@100 "
                                     f"{test['card_precision_at_100']:.3f}, cost {test['expected_cost']:,.0f}"],
         ["batch scores", f"{ml['scored']:,} payments into gold.fact_payment_scores ({ml['declined']:,} declined)"],
         ["online decision", f"{ml['online'].get('decision')} (score {ml['online'].get('score')}), median "
                             f"{ml['online'].get('median_ms')} ms (features + model)" if ml["online"] else "none"],
         ["stack up", f"{timings['stack_up_s']:.1f}s"],
         ["OLTP steps", f"{timings['oltp_s']:.1f}s"],
         ["CDC start (snapshot)", f"{timings['cdc_s']:.1f}s"],
         ["Spark session start", f"{timings['spark_start_s']:.1f}s"],
         ["self-check", f"{timings['selfcheck_s']:.1f}s"],
         ["bronze catch-up", f"{timings['bronze_s']:.1f}s"],
         ["silver catch-up", f"{timings['silver_s']:.1f}s"],
         ["reconcile", f"{timings['reconcile_s']:.1f}s"],
         ["gold build + reconcile", f"{timings['gold_s']:.1f}s"],
         ["features", f"{timings['features_s']:.1f}s"],
         ["train + promote + score", f"{timings['ml_s']:.1f}s"],
         ["result", "OK" if ok else f"FAILED: {', '.join(failed)}"]]))
    print(f"\nTry: lakehouse sql \"SELECT job, status, rows_written, started_at FROM {JOB_RUNS.full_name} "
          "ORDER BY started_at DESC LIMIT 5\"\n     lakehouse sql \"SELECT op, count(*) FROM "
          "bronze.cdc_payments_charges GROUP BY op\"\n     lakehouse sql \"SELECT status, sum(amount_usd) FROM "
          "silver.charges GROUP BY status\"\n     lakehouse reconcile --layer all\n     lakehouse query --list\n"
          "     lakehouse query revenue_monthly_growth\n     lakehouse ml history\n"
          "     lakehouse ml serve   # then: curl -XPOST localhost:18091/score -d @payment.json\n"
          "     lakehouse simulate --seed 42 --rate 200 "
          "--duration 30 && lakehouse run bronze --once && lakehouse run silver --once && lakehouse run gold --once\n"
          "Stop the services: lakehouse stack down")
    return 0 if ok else 1


# --- config / jobs ------------------------------------------------------------------------------
def cmd_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    doc = as_dict(settings)
    doc["derived"] = {"state_dir": str(settings.state_dir), "jar_dir": str(settings.jar_dir),
                      "lakehouse_dir": settings.lakehouse_dir, "checkpoint_dir": settings.checkpoint_dir}
    print(json.dumps(doc, indent=2, default=str))
    return 0


def cmd_docs(args: argparse.Namespace) -> int:
    """`tables` (the default) needs nothing running; `erd` and `all` read the live OLTP schema."""
    from lakehouse.common.docs import write_docs

    if args.which in ("tables", "all"):
        for path in write_docs():
            print(f"wrote {path}")
    if args.which in ("erd", "all"):
        import psycopg

        from lakehouse.oltp.erd import ErdError, write_erd

        try:
            paths = write_erd(_settings(args))
        except (ErdError, psycopg.OperationalError) as e:
            print(f"error: docs erd: {str(e).strip()}\nThe ERD is read from the live schema: run "
                  "`lakehouse stack up --only postgres` and `lakehouse oltp migrate` first.", file=sys.stderr)
            return 1
        for path in paths:
            print(f"wrote {path}")
    return 0


def cmd_jobs(_: argparse.Namespace) -> int:
    for job in JOBS.values():
        print(f"{job.name:<14} {job.help}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lakehouse", description="payments-lakehouse command line")
    add_common_options(parser)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("stack", help="start, stop and inspect the local services")
    ssub = p.add_subparsers(dest="action", required=True)
    up = ssub.add_parser("up", help="start PostgreSQL, Redis, Kafka and Kafka Connect; wait until healthy")
    up.add_argument("--only", action="append", choices=["postgres", "postgres-replica", "redis", "kafka", "connect"],
                    help="start only these services (repeatable)")
    up.add_argument("--with-replica", action="store_true",
                    help="also run a hot standby of PostgreSQL (streaming, synchronous commit); "
                         "same as services.replica.enabled=true")
    down = ssub.add_parser("down", help="stop the services, keeping their data")
    down.add_argument("--purge", action="store_true", help="also delete the services' data and the lakehouse")
    st = ssub.add_parser("status", help="each service's host, port, health and connection settings")
    st.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_stack)

    p = sub.add_parser("sql", help="run Spark SQL on the lakehouse catalog (bronze.*, silver.*, gold.*, ops.*)")
    p.add_argument("statement")
    p.add_argument("--json", action="store_true", help="print all rows as a JSON array")
    p.add_argument("--max-rows", type=int, default=100, help="rows shown in table output (default 100)")
    p.set_defaults(func=cmd_sql)

    p = sub.add_parser("query", help="run a named query from the query pack (queries/*.sql); --list shows them")
    p.add_argument("name", nargs="?", help="the query, as in `lakehouse query --list`")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a parameter of the query (repeatable); omitted ones take their defaults")
    p.add_argument("--list", action="store_true", help="list the queries with their parameters")
    p.add_argument("--json", action="store_true", help="print all rows (with --list: the queries) as a JSON array")
    p.add_argument("--max-rows", type=int, default=100, help="rows shown in table output (default 100)")
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("run", help="run a pipeline job (see `lakehouse jobs`); extra options go to the job")
    p.add_argument("job", choices=sorted(JOBS))
    p.add_argument("--once", action="store_true", help="process what is available and stop (availableNow)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("reconcile", help="compare silver's current state with PostgreSQL, table by table, and "
                                         "gold's net revenue with the OLTP ledger; exit 1 on any difference")
    p.add_argument("--json", action="store_true")
    p.add_argument("--layer", choices=("silver", "gold", "all"), default="silver",
                   help="silver: every captured table (default); gold: net revenue per merchant, day and "
                        "currency against payments.balance_transactions; all: both")
    p.add_argument("--table", action="append", default=[], help="only this silver table (repeatable)")
    p.set_defaults(func=cmd_reconcile)

    p = sub.add_parser("maintain", help="OPTIMIZE (compaction; clustering of liquid-clustered tables) and VACUUM "
                                        "of the lakehouse's Delta tables; exit 1 when a table failed")
    p.add_argument("--layer", choices=("bronze", "silver", "gold", "ops", "all"), default="all",
                   help="the tables of this layer (default: all)")
    p.add_argument("--table", action="append", default=[], metavar="NAME",
                   help="only this table: layer.name, or a name one chosen layer has (repeatable)")
    p.add_argument("--retain-hours", type=int, default=168, metavar="H",
                   help="VACUUM keeps files removed less than H hours ago (default and minimum: 168, 7 days)")
    p.add_argument("--dry-run", action="store_true", help="no OPTIMIZE; list what VACUUM would delete")
    p.add_argument("--json", action="store_true", help="print the summary as JSON (progress goes to stderr)")
    p.set_defaults(func=cmd_maintain)

    p = sub.add_parser("demo", help="everything end to end on this machine, then a summary")
    p.add_argument("--rows", type=int, default=100_000, help="rows of the Delta self-check (default 100000)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--days", type=int, default=7, help="days of payment history on the first run (default 7)")
    p.add_argument("--live-seconds", type=float, default=5, help="seconds of live payments (default 5)")
    p.add_argument("--rate", type=float, default=50, help="live payments per second (default 50)")
    p.set_defaults(func=cmd_demo)

    from lakehouse.oltp.cli import add_parsers as add_oltp_parsers

    add_oltp_parsers(sub, _settings)

    from lakehouse.cdc.cli import add_parsers as add_cdc_parsers

    add_cdc_parsers(sub, _settings)

    from lakehouse.ml.cli import add_parsers as add_ml_parsers

    add_ml_parsers(sub, _settings)

    p = sub.add_parser("config", help="print the resolved configuration")
    p.set_defaults(func=cmd_config)
    p = sub.add_parser("docs", help="regenerate the generated documents: tables (docs/tables.md, docs/security.md's "
                                    "classification, docs/quality.md's suites; the default), "
                                    "erd (docs/oltp/erd.md and erd.svg, from the live OLTP schema) or all")
    p.add_argument("which", nargs="?", choices=["tables", "erd", "all"], default="tables",
                   help="tables needs nothing running; erd and all connect to the OLTP database (default: tables)")
    p.set_defaults(func=cmd_docs)
    p = sub.add_parser("jobs", help="list the jobs `lakehouse run` knows")
    p.set_defaults(func=cmd_jobs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command not in ("run", "ml"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    from lakehouse.stack.process import ServiceError

    try:
        if args.command == "run":
            return int(cmd_run(args, rest))
        if args.command == "ml":
            if rest and args.ml_action not in ("train", "promote", "score", "monitor", "churn"):
                parser.error(f"unrecognized arguments: {' '.join(rest)}")
            return int(args.func(args, rest))
        return int(args.func(args))
    except ConfigError as e:
        print(f"error: configuration: {e}", file=sys.stderr)
        return 2
    except ServiceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
