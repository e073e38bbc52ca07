"""Sources: the gold feature tables (Delta, by catalog name) and the streaming push sources."""

from feast import PushSource
from feast.infra.offline_stores.contrib.spark_offline_store.spark_source import SparkSource


def _delta(name: str, table: str) -> SparkSource:
    # `table=`: the catalog name lakehouse.common.spark.get_spark attaches in every session; Feast's
    # `path=` + `file_format` has no Delta.
    return SparkSource(name=name, table=table, timestamp_field="event_ts", created_timestamp_column="created_ts")


payment_windows_source = _delta("payment_windows_source", "gold.feat_payment_windows")
customer_profile_source = _delta("customer_profile_source", "gold.feat_customer_profile")
merchant_daily_source = _delta("merchant_daily_source", "gold.feat_merchant_daily")
terminal_daily_source = _delta("terminal_daily_source", "gold.feat_terminal_daily")

# Streaming features: pushed to the online store by the streaming job; their offline history is the
# Delta table the same job appends to (Feast's offline push cannot write Delta).
card_stream_push = PushSource(name="card_stream_push",
                              batch_source=_delta("card_stream_source", "gold.feat_card_stream"))
customer_stream_push = PushSource(name="customer_stream_push",
                                  batch_source=_delta("customer_stream_source", "gold.feat_customer_stream"))
