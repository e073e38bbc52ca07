"""What gold reads from silver: per silver table, the columns gold uses and their types.

Gold's transforms name their inputs' columns here, once. `read_silver` gives a silver table with just
those columns, or an empty DataFrame of the same shape when silver has no such table yet (a small
history may have no dispute at all): a gold table is then built with no rows from it, not skipped.
"""

from __future__ import annotations

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import StructType

from lakehouse.common.config import Settings
from lakehouse.common.tables import columns, table_path

_SEQ = "_seq_lsn bigint, _seq_offset bigint"
_SCD2 = f"valid_from timestamp, valid_to timestamp, is_current boolean, _is_deleted boolean, {_SEQ}"
_M = "decimal(23,4)"
_U = "decimal(25,2)"

SILVER_INPUTS: dict[str, StructType] = {name: columns(ddl) for name, ddl in {
    "merchants": "merchant_id bigint, name string, status string, country_code string, region_code string, "
                 f"mcc string, default_currency string, created_at timestamp, {_SCD2}",
    "customers": "customer_id bigint, email_pseudo string, country_code string, region_code string, "
                 f"created_at timestamp, {_SCD2}",
    "payment_methods": "payment_method_id bigint, customer_id bigint, kind string, status string, "
                       f"created_at timestamp, {_SCD2}",
    "cards": "payment_method_id bigint, brand string, bin string, last4 string, issuing_country string",
    "ref_countries": "country_code string, alpha3 string, name string, region_code string, currency_code string",
    "ref_regions": "region_code string, name string",
    "ref_currencies": "currency_code string, name string, minor_unit smallint",
    "ref_merchant_categories": "mcc string, description string, risk_level string",
    "ref_fx_rates": "currency_code string, rate_date date, usd_per_unit decimal(20,10)",
    "products": "product_id bigint, merchant_id bigint, name string, category string",
    "plans": f"plan_id bigint, product_id bigint, name string, amount {_M}, currency_code string, "
             "billing_interval string, active boolean",
    "charges": "charge_id bigint, created_at timestamp, merchant_id bigint, customer_id bigint, "
               "payment_method_id bigint, currency_code string, status string, failure_code string, "
               f"device_type string, ip_country string, risk_score decimal(5,4), updated_at timestamp, "
               f"amount {_M}, captured_amount {_M}, refunded_amount {_M}, amount_usd {_U}, "
               f"captured_amount_usd {_U}, refunded_amount_usd {_U}",
    "refunds": f"refund_id bigint, charge_id bigint, currency_code string, reason string, status string, "
               f"created_at timestamp, amount {_M}, amount_usd {_U}",
    "disputes": "dispute_id bigint, charge_id bigint, currency_code string, reason string, status string, "
                f"opened_at timestamp, closed_at timestamp, amount {_M}, amount_usd {_U}",
    "balance_transactions": "txn_id bigint, created_at timestamp, merchant_id bigint, kind string, "
                            "charge_id bigint, refund_id bigint, dispute_id bigint, currency_code string, "
                            f"amount {_M}, fee {_M}, net {_M}, amount_usd {_U}, fee_usd {_U}, net_usd {_U}",
    "subscriptions": "subscription_id bigint, customer_id bigint, plan_id bigint, status string, "
                     "created_at timestamp, canceled_at timestamp",
    "invoices": f"invoice_id bigint, subscription_id bigint, currency_code string, status string, "
                f"created_at timestamp, paid_at timestamp, amount {_M}, amount_usd {_U}",
    "fraud_ground_truth": "charge_id bigint, is_fraud boolean, scenario string",
    "dq_results": "table string, success boolean, element_count bigint, unexpected_count bigint, "
                  "run_at timestamp",
}.items()}


def silver_path(settings: Settings, name: str) -> str:
    return table_path(settings, f"silver.{name}")


def read_silver(spark: SparkSession, settings: Settings, name: str) -> DataFrame:
    """`silver.<name>` with the columns of SILVER_INPUTS[name] (cast to their declared types), or no
    rows of that shape when the table does not exist. A declared column silver lacks is an error."""
    schema = SILVER_INPUTS[name]
    path = silver_path(settings, name)
    if not DeltaTable.isDeltaTable(spark, path):
        return spark.createDataFrame([], schema)
    return _declared(spark.read.format("delta").load(path), name)


def silver_changes(spark: SparkSession, settings: Settings, name: str, after: int, upto: int) -> DataFrame:
    """The rows of `silver.<name>`'s Change Data Feed in versions (after, upto] (every change type, pre-
    and post-images), with the declared columns and `_change_type`."""
    changes = (spark.read.format("delta").option("readChangeFeed", "true")
               .option("startingVersion", after + 1).option("endingVersion", upto).load(silver_path(settings, name)))
    return _declared(changes, name, extra=("_change_type",))


def _declared(df: DataFrame, name: str, extra: tuple[str, ...] = ()) -> DataFrame:
    schema = SILVER_INPUTS[name]
    missing = [f.name for f in schema.fields if f.name not in df.columns]
    if missing:
        raise ValueError(f"silver.{name} lacks the columns gold reads: {', '.join(missing)}")
    return df.select(*[F.col(f.name).cast(f.dataType).alias(f.name) for f in schema.fields], *extra)
