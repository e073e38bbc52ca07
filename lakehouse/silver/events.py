"""Silver app-event tables: the bronze event streams parsed into typed tables (pure transforms + one MERGE).

    bronze.events_<family> ─ build_silver_events(family) ─► silver rows ─ apply_events_batch ─► silver.<table>
                           └ rejected_events(family) ────► quarantine rows (the caller writes them)

    family        silver table                 one row per
    clickstream   silver.clickstream_events    page_view or click event
    sessions      silver.session_events        session_start or session_end event
    app_logs      silver.app_logs              log or error event
    feedback      silver.feedback              review, survey or free_text event

Every table has the envelope (`event_id`, `event_type`, `event_time`, `event_date` = its UTC day, the
partition column, `customer_id`, `session_id`), the family's payload fields as typed columns (below,
`FAMILIES`), `attributes` (VARIANT: the rest of the producer's `payload` object: what no column holds,
without JSON nulls and emptied objects; NULL when nothing is left) and the bronze lineage (`_topic`,
`_partition`, `_offset`). See docs/silver_events.md.

What a row must be to reach silver: a bronze row without `_parse_error`, of schema_version 1, of one of
the family's event types, whose `payload` is an object and whose every lifted field has its JSON type
(a string where a string column is, an integer where an integer column is; JSON null is fine). Anything
else goes to `rejected_events` with every reason found, so that rows in = silver rows + rejected rows.

Personal data: free text (`feedback.text`, `app_logs.message`) passes through
`lakehouse.security.redact.redact_free_text` (card numbers, e-mail addresses). The client IP
(`payload.geo.ip`) is dropped: no column holds it and `attributes` does not carry it; `geo_country` and
`geo_city` stay. A rejected row's `record` is the raw message with the same redactions and the IP
masked; the exact bytes stay in bronze, at (`source_table`, `source_partition`, `source_offset`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import reduce
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import Column, DataFrame, SparkSession, Window
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    DataType,
    DateType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
    VariantType,
)

from lakehouse.bronze.tables import events_table
from lakehouse.common.tables import TableSpec
from lakehouse.security.redact import redact_free_text
from lakehouse.silver.conform import normalize_device_type, utc_date

LAYER = "silver"
SCHEMA_VERSIONS = frozenset({1})          # the envelope versions these parsers understand
PARTITION_COLUMN = "event_date"
ATTRIBUTES = "attributes"
LINEAGE = ("_topic", "_partition", "_offset")
REDACTED_IP = "[REDACTED_IP]"

# Reasons of rejected rows (prefixes stay stable so that quarantine can be grouped on them); bronze's
# `_parse_error` is passed on as it is.
ERR_UNKNOWN_VERSION = "unknown schema_version: "
ERR_UNKNOWN_EVENT_TYPE = "unknown event_type: "
ERR_MISSING_PAYLOAD = "missing payload"
ERR_TYPE = "type error: "

REJECTED_SCHEMA = StructType([
    StructField("source_table", StringType(), False),
    StructField("source_partition", IntegerType(), False),
    StructField("source_offset", LongType(), False),
    StructField("record", StringType(), True),
    StructField("reasons", ArrayType(StringType(), True), False),
])

_SPARK_TYPES: dict[str, DataType] = {"string": StringType(), "bigint": LongType(), "int": IntegerType()}
# What schema_of_variant calls the JSON values each column type accepts (JSON integers parse to the
# smallest integer type that holds them; 4.0 parses to a DECIMAL and is no integer).
_JSON_TYPES = {"string": ("STRING",), "bigint": ("TINYINT", "SMALLINT", "INT", "BIGINT"),
               "int": ("TINYINT", "SMALLINT", "INT", "BIGINT")}


@dataclass(frozen=True)
class EventField:
    """A typed column lifted out of the event document.

    `paths`: JSON paths in the document (`payload.page.type`), the first present one wins (every one is
    type-checked, and every one leaves `attributes`). `type`: `string`, `bigint` or `int`. `conform`:
    applied to the typed value (redaction, normalization)."""

    column: str
    paths: tuple[str, ...]
    type: str
    conform: Callable[[Column], Column] | None = None

    def __post_init__(self) -> None:
        if self.type not in _SPARK_TYPES:
            raise ValueError(f"{self.column}: unknown type {self.type!r}; expected one of {sorted(_SPARK_TYPES)}")

    @property
    def spark_type(self) -> DataType:
        return _SPARK_TYPES[self.type]


def _f(column: str, *paths: str, type: str = "string", conform: Callable[[Column], Column] | None = None,
       ) -> EventField:
    return EventField(column, tuple(paths), type, conform)


@dataclass(frozen=True)
class EventFamily:
    """One event family: its bronze and silver tables, event types and lifted fields."""

    family: str
    table: TableSpec
    event_types: tuple[str, ...]
    fields: tuple[EventField, ...]                  # the family's payload columns (after the envelope's)
    dropped: tuple[str, ...] = ()                   # paths removed from `attributes` without a column (PII)

    @property
    def bronze_table(self) -> str:
        return events_table(self.family).full_name


ENVELOPE_FIELDS = (_f("customer_id", "customer_id", type="bigint"), _f("session_id", "session_id"))
_DEVICE = (_f("device_type", "payload.device.type", conform=normalize_device_type),
           _f("device_os", "payload.device.os"))
_GEO = (_f("geo_country", "payload.geo.country"), _f("geo_city", "payload.geo.city"))
_GEO_IP = "payload.geo.ip"


def _schema(fields: Sequence[EventField]) -> StructType:
    return StructType([
        StructField("event_id", StringType(), False),
        StructField("event_type", StringType(), False),
        StructField("event_time", TimestampType(), False),
        StructField(PARTITION_COLUMN, DateType(), False),
        *[StructField(f.column, f.spark_type, True) for f in (*ENVELOPE_FIELDS, *fields)],
        StructField(ATTRIBUTES, VariantType(), True),
        StructField("_topic", StringType(), False),
        StructField("_partition", IntegerType(), False),
        StructField("_offset", LongType(), False),
    ])


# Inserts only (MERGE on event_id): the change data feed is what gold reads incrementally.
TABLE_PROPERTIES = {"delta.enableChangeDataFeed": "true"}


def _table(name: str, family: str, fields: Sequence[EventField], what: str) -> TableSpec:
    return TableSpec(layer=LAYER, name=name, schema=_schema(fields), partition_by=(PARTITION_COLUMN,),
                     properties=TABLE_PROPERTIES,
                     comment=f"{what} from bronze.events_{family}: typed payload fields, the rest as VARIANT "
                             "attributes (client IP dropped, free text redacted), one row per event_id.")


_CLICKSTREAM_FIELDS = (
    _f("page_type", "payload.page.type"), _f("page_path", "payload.page.path"),
    _f("page_referrer", "payload.page.referrer", conform=redact_free_text), _f("element_id", "payload.element.id"),
    _f("element_text", "payload.element.text"), _f("merchant_id", "payload.merchant_id", type="bigint"),
    *_DEVICE, _f("channel", "payload.device.channel"), _f("app_version", "payload.device.app_version"), *_GEO,
    _f("cart_amount_minor", "payload.cart.amount_minor", type="bigint"),
    _f("cart_currency_code", "payload.cart.currency"),
)
_SESSION_FIELDS = (
    # `device.channel` repeats the session's `channel`: one column for both
    _f("channel", "payload.channel", "payload.device.channel"), *_DEVICE,
    _f("app_version", "payload.device.app_version"), *_GEO, _f("merchant_id", "payload.merchant_id", type="bigint"),
    _f("landing_path", "payload.landing.path"),
    _f("landing_referrer", "payload.landing.referrer", conform=redact_free_text),   # URLs can carry e-mails
    _f("duration_ms", "payload.duration_ms", type="bigint"), _f("page_views", "payload.page_views", type="int"),
    _f("clicks", "payload.clicks", type="int"), _f("outcome", "payload.outcome"),
    _f("charge_id", "payload.charge_id", type="bigint"),
)
_APP_LOG_FIELDS = (
    _f("level", "payload.level"), _f("service", "payload.service"),
    _f("message", "payload.message", conform=redact_free_text), _f("trace_id", "payload.trace_id"),
    _f("error_type", "payload.error.type"), _f("error_code", "payload.error.code"),
    # the charge a line is about: in `context`, and in `error` for declines (the same id)
    _f("charge_id", "payload.context.charge_id", "payload.error.charge_id", type="bigint"),
    _f("merchant_id", "payload.context.merchant_id", type="bigint"),
    _f("amount_minor", "payload.context.amount_minor", type="bigint"),
    _f("currency_code", "payload.context.currency"),
    _f("refund_id", "payload.context.refund_id", type="bigint"),
    _f("dispute_id", "payload.context.dispute_id", type="bigint"),
    _f("http_method", "payload.http.method"), _f("http_path", "payload.http.path"),
    _f("http_status", "payload.http.status", type="int"),
    _f("http_duration_ms", "payload.http.duration_ms", type="bigint"),
)
_FEEDBACK_FIELDS = (
    _f("kind", "payload.kind"), _f("merchant_id", "payload.merchant_id", type="bigint"),
    _f("charge_id", "payload.charge_id", type="bigint"), _f("rating", "payload.rating", type="int"),
    _f("text", "payload.text", conform=redact_free_text), _f("topic", "payload.topic"),
    _f("survey_id", "payload.survey.id"), _f("survey_question", "payload.survey.question"),
    _f("channel", "payload.channel"),
)

CLICKSTREAM_EVENTS = _table("clickstream_events", "clickstream", _CLICKSTREAM_FIELDS, "Page views and clicks")
SESSION_EVENTS = _table("session_events", "sessions", _SESSION_FIELDS, "Session starts and ends")
APP_LOGS = _table("app_logs", "app_logs", _APP_LOG_FIELDS, "Application and error log lines")
FEEDBACK = _table("feedback", "feedback", _FEEDBACK_FIELDS, "Customer reviews, survey answers and messages")
EVENT_TABLES = (CLICKSTREAM_EVENTS, SESSION_EVENTS, APP_LOGS, FEEDBACK)

FAMILIES: dict[str, EventFamily] = {
    "clickstream": EventFamily("clickstream", CLICKSTREAM_EVENTS, ("page_view", "click"), _CLICKSTREAM_FIELDS,
                               dropped=(_GEO_IP,)),
    "sessions": EventFamily("sessions", SESSION_EVENTS, ("session_start", "session_end"), _SESSION_FIELDS,
                            dropped=(_GEO_IP,)),
    "app_logs": EventFamily("app_logs", APP_LOGS, ("log", "error"), _APP_LOG_FIELDS),
    "feedback": EventFamily("feedback", FEEDBACK, ("review", "survey", "free_text"), _FEEDBACK_FIELDS),
}


def event_family(family: str) -> EventFamily:
    """The spec of `family` (clickstream, sessions, app_logs, feedback)."""
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown event family {family!r}; expected one of {', '.join(FAMILIES)}") from None


# ------------------------------------------------------------------------------------ parsing
_DOC = "payload"                       # bronze's VARIANT column: the whole document
_FIELDS = "__fields"
_REASONS = "__reasons"


def _tree(paths: Sequence[str]) -> dict[str, Any]:
    """Dotted paths as a tree: key -> None (a leaf) or key -> subtree."""
    tree: dict[str, Any] = {}
    for path in paths:
        *parents, leaf = path.split(".")
        node = tree
        for part in parents:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            node = child
        node[leaf] = None
    return tree


def _struct_of_variants(tree: dict[str, Any]) -> str:
    """`{"a": None, "p": {"t": None}}` -> `struct<`a` variant, `p` struct<`t` variant>>`."""
    return "struct<" + ", ".join(f"`{k}` {'variant' if sub is None else _struct_of_variants(sub)}"
                                 for k, sub in tree.items()) + ">"


def _containers(paths: Sequence[str]) -> list[str]:
    """The object paths above every leaf path (`payload.page.type` -> `payload`, `payload.page`)."""
    out: list[str] = []
    for path in paths:
        parts = path.split(".")
        for i in range(1, len(parts)):
            prefix = ".".join(parts[:i])
            if prefix not in out:
                out.append(prefix)
    return out


def _present(v: Column) -> Column:
    """A VARIANT that is there and not JSON null."""
    return v.isNotNull() & ~F.is_variant_null(v)


def _typed(raw: Column, type_name: str) -> Column:
    """`raw` (VARIANT) as `type_name` when its JSON type fits exactly, NULL otherwise (and for JSON null)."""
    return F.when(F.schema_of_variant(raw).isin(*_JSON_TYPES[type_name]), F.try_variant_get(raw, "$", type_name))


def _without(entries: Column, tree: dict[str, Any]) -> Column:
    """`entries` (an object as map<string, variant>) without the keys of `tree` (recursively), JSON nulls
    and objects left empty, as a VARIANT object; NULL when nothing is left or it is not an object."""
    nested = {k: sub for k, sub in tree.items() if sub}
    removed = [k for k, sub in tree.items() if sub is None]
    if nested:
        def reduce_nested(key: Column, value: Column) -> Column:
            (first, first_sub), *rest = nested.items()
            as_map = F.try_variant_get(value, "$", "map<string,variant>")
            out = F.when(key == F.lit(first), _without(as_map, first_sub))
            for k, sub in rest:
                out = out.when(key == F.lit(k), _without(as_map, sub))
            return out.otherwise(value)
        entries = F.transform_values(entries, reduce_nested)

    def keep(key: Column, value: Column) -> Column:
        return _present(value) & ~key.isin(*removed) if removed else _present(value)

    kept = F.map_filter(entries, keep)
    return F.when(F.size(kept) > F.lit(0), F.to_variant_object(kept))


def _checked(spec: EventFamily) -> Callable[[DataFrame], DataFrame]:
    """Bronze rows -> the envelope, every lifted field typed (before `conform`), the lineage, `_value`,
    the document and `__reasons` (empty: the row belongs in silver).

    One lookup reads every lifted field of the document as VARIANT (a struct of VARIANTs: a field whose
    parent is not an object comes out NULL, its neighbours do not); each is then typed strictly. Only
    built-in expressions without lambdas, so that the projection runs as generated code."""
    fields = (*ENVELOPE_FIELDS, *spec.fields)
    leaves = [p for f in fields for p in f.paths]
    containers = _containers(leaves)
    lookup = _struct_of_variants(_tree(leaves))

    def _(bronze: DataFrame) -> DataFrame:
        doc = F.col(_DOC)

        def raw(path: str) -> Column:
            v = F.col(f"{_FIELDS}.{path}")
            return F.when(~F.is_variant_null(v), v)

        typed = {p: _typed(raw(p), f.type) for f in fields for p in f.paths}

        def value(f: EventField) -> Column:
            return F.coalesce(*[typed[p] for p in f.paths]) if len(f.paths) > 1 else typed[f.paths[0]]

        # Every check as a condition (true: failed) with its reason. A container the lookup could not read
        # as an object, yet there and not null, is of the wrong type (the second lookup runs only then).
        failed: list[tuple[Column, Column]] = [
            (~F.col("event_type").isin(*spec.event_types),
             F.concat(F.lit(ERR_UNKNOWN_EVENT_TYPE), F.col("event_type"))),
            (F.col(f"{_FIELDS}.payload").isNull(),
             F.when(_present(F.try_variant_get(doc, "$.payload", "variant")), F.lit(ERR_TYPE + "payload"))
             .otherwise(F.lit(ERR_MISSING_PAYLOAD))),
            *[(F.col(f"{_FIELDS}.{c}").isNull() & _present(F.try_variant_get(doc, f"$.{c}", "variant")),
               F.lit(ERR_TYPE + c)) for c in containers if c != "payload"],
            *[(raw(p).isNotNull() & typed[p].isNull(), F.lit(ERR_TYPE + p)) for p in leaves],
        ]
        any_failed = reduce(lambda a, b: a | b, [condition for condition, _ in failed])
        version = F.col("schema_version")
        reasons = (F.when(F.col("_parse_error").isNotNull(), F.array(F.col("_parse_error")))
                   .when(version.isNull() | ~version.isin(*sorted(SCHEMA_VERSIONS)),
                         F.array(F.concat(F.lit(ERR_UNKNOWN_VERSION),
                                          F.coalesce(version.cast("string"), F.lit("null")))))
                   .when(~any_failed, F.array().cast("array<string>"))
                   # the checks that failed, in order (array_except drops the NULLs; array_compact would too,
                   # but it is a lambda underneath and takes the projection out of generated code)
                   .otherwise(F.array_except(F.array(*[F.when(c, reason) for c, reason in failed]),
                                             F.array(F.lit(None).cast("string")))))
        return (bronze.withColumn(_FIELDS, F.try_variant_get(doc, "$", lookup))
                .select(F.col("event_id"), F.col("event_type"), F.col("event_time"),
                        *[value(f).alias(f.column) for f in fields],
                        *[F.col(c) for c in LINEAGE], F.col("_value"), doc, reasons.alias(_REASONS)))
    return _


def _rows_where(spec: EventFamily, rejected: bool) -> Callable[[DataFrame], DataFrame]:
    """`_checked` rows with (`rejected`) or without reasons.

    Not a Filter: Catalyst would push it below the projection that computes the reasons and inline them,
    evaluating every lookup twice (measured). Each row becomes a one-element array when wanted (NULL
    otherwise) that `inline` unpacks: a Generate, which nothing is pushed through or merged across, so
    the checks run once, as generated code, and what needs lambdas (redaction, `attributes`) runs after
    it, on the wanted rows only."""
    def _(bronze: DataFrame) -> DataFrame:
        checked = bronze.transform(_checked(spec))
        count = F.size(F.col(_REASONS))
        wanted = count > F.lit(0) if rejected else count == F.lit(0)
        row = F.struct(*[F.col(c) for c in checked.columns])
        return checked.select(F.inline(F.when(wanted, F.array(row))))
    return _


def build_silver_events(family: str) -> Callable[[DataFrame], DataFrame]:
    """Bronze rows of `bronze.events_<family>` (EVENTS_SCHEMA) -> the family's silver rows, in the silver
    table's column order (`event_family(family).table.schema`); rows that do not qualify are left out
    (`rejected_events` gives them). Duplicates stay: `apply_events_batch` inserts each event_id once."""
    spec = event_family(family)
    fields = (*ENVELOPE_FIELDS, *spec.fields)
    lifted = [p.removeprefix("payload.") for f in spec.fields for p in f.paths if p.startswith("payload.")]
    attributes_tree = _tree([*lifted, *[p.removeprefix("payload.") for p in spec.dropped]])

    def _(bronze: DataFrame) -> DataFrame:
        payload = F.try_variant_get(F.col(_DOC), "$.payload", "map<string,variant>")
        return (bronze.transform(_rows_where(spec, rejected=False))
                .select(F.col("event_id"), F.col("event_type"), F.col("event_time"),
                        utc_date(F.col("event_time")).alias(PARTITION_COLUMN),
                        *[(f.conform(F.col(f.column)) if f.conform else F.col(f.column)).cast(f.spark_type)
                          .alias(f.column) for f in fields],
                        _without(payload, attributes_tree).alias(ATTRIBUTES),
                        *[F.col(c) for c in LINEAGE]))
    return _


def build_silver_clickstream(bronze: DataFrame) -> DataFrame:
    """bronze.events_clickstream -> silver.clickstream_events rows (page_view and click events)."""
    return bronze.transform(build_silver_events("clickstream"))


def build_silver_sessions(bronze: DataFrame) -> DataFrame:
    """bronze.events_sessions -> silver.session_events rows (session_start and session_end events)."""
    return bronze.transform(build_silver_events("sessions"))


def build_silver_app_logs(bronze: DataFrame) -> DataFrame:
    """bronze.events_app_logs -> silver.app_logs rows (message redacted)."""
    return bronze.transform(build_silver_events("app_logs"))


def build_silver_feedback(bronze: DataFrame) -> DataFrame:
    """bronze.events_feedback -> silver.feedback rows (text redacted)."""
    return bronze.transform(build_silver_events("feedback"))


def redact_record(raw: Column) -> Column:
    """A raw event message fit for quarantine: the `"ip"` member's value masked (also in a truncated
    message), then card numbers and e-mail addresses redacted as in free text."""
    no_ip = F.regexp_replace(raw, r'("ip"\s*:\s*")[^"]*("|$)', f"$1{REDACTED_IP}$2")
    return redact_free_text(no_ip)


def rejected_events(family: str) -> Callable[[DataFrame], DataFrame]:
    """Bronze rows of `bronze.events_<family>` -> the ones that do not reach silver, as REJECTED_SCHEMA
    rows for the quarantine writer: `source_table` (`bronze.events_<family>`), `source_partition`,
    `source_offset` (the Kafka coordinates, which find the exact message in bronze), `record`
    (`redact_record` of the raw value; NULL for a NULL value) and `reasons`: bronze's `_parse_error`
    (`invalid JSON`, `unknown schema_version: 99`, `missing event_id`, …) alone, or `unknown
    schema_version: <v>` for a version bronze knows and these parsers do not, or every one of `unknown
    event_type: <t>`, `missing payload`, `type error: <path>` (e.g. `type error: payload.rating`)."""
    spec = event_family(family)
    source = spec.bronze_table

    def _(bronze: DataFrame) -> DataFrame:
        return (bronze.transform(_rows_where(spec, rejected=True))
                .select(F.lit(source).alias("source_table"), F.col("_partition").alias("source_partition"),
                        F.col("_offset").alias("source_offset"), redact_record(F.col("_value")).alias("record"),
                        F.col(_REASONS).alias("reasons")))
    return _


# ------------------------------------------------------------------------------------ writing
def ensure_event_table(spark: SparkSession, table: TableSpec, path: str) -> DeltaTable:
    """The Delta table of `table` at `path`, created (schema, partitioning, properties) when missing."""
    builder = (DeltaTable.createIfNotExists(spark).location(path).addColumns(table.schema)
               .partitionedBy(*table.partition_by).comment(table.comment))
    for key, value in table.properties.items():
        builder = builder.property(key, value)
    builder.execute()
    return DeltaTable.forPath(spark, path)


def first_per_event_id(rows: DataFrame) -> DataFrame:
    """One row per `event_id`: the first received (lowest Kafka partition, then offset), so a duplicate
    inside one batch cannot be inserted twice (an insert-only MERGE inserts every unmatched source row)."""
    first = Window.partitionBy("event_id").orderBy(F.col("_partition"), F.col("_offset"))
    return rows.withColumn("__n", F.row_number().over(first)).where(F.col("__n") == F.lit(1)).drop("__n")


def apply_events_batch(bronze_rows: DataFrame, family: str, target_path: str) -> dict[str, int]:
    """Writes the family's silver rows of one bronze micro-batch to the table at `target_path` (created
    when missing) and returns `{"source_rows": …, "inserted": …}`: the batch's distinct well-formed
    events, and those that were new.

    A MERGE on `event_id` that only inserts: an event already in the table (a replayed batch, a
    duplicate the producer sent twice) writes nothing. The condition names the batch's event dates
    literally, so that the MERGE reads only those partitions (an event id always comes with the same
    event time, so its date is part of its identity). Rejected rows are not written here: the caller
    writes `bronze_rows.transform(rejected_events(family))` to quarantine (persist `bronze_rows`
    first: both read the same batch)."""
    spec = event_family(family)
    spark = bronze_rows.sparkSession
    rows = bronze_rows.transform(build_silver_events(family)).transform(first_per_event_id).persist()
    try:
        target = ensure_event_table(spark, spec.table, target_path)
        dates = sorted(r[0] for r in rows.select(PARTITION_COLUMN).distinct().collect())
        if not dates:
            return {"source_rows": 0, "inserted": 0}
        source_rows = rows.count()
        in_batch_dates = F.col(f"t.{PARTITION_COLUMN}").isin(*dates)
        match = ((F.col("t.event_id") == F.col("s.event_id"))
                 & (F.col(f"t.{PARTITION_COLUMN}") == F.col(f"s.{PARTITION_COLUMN}")) & in_batch_dates)
        before = _version(target)
        (target.alias("t").merge(rows.alias("s"), match)
         .whenNotMatchedInsertAll()
         .execute())
        [last] = target.history(1).select("version", "operationMetrics").collect()
        metrics = (last["operationMetrics"] or {}) if last["version"] > before else {}
        return {"source_rows": source_rows, "inserted": int(metrics.get("numTargetRowsInserted", 0))}
    finally:
        rows.unpersist()


def _version(table: DeltaTable) -> int:
    [row] = table.history(1).select("version").collect()
    return int(row["version"])
