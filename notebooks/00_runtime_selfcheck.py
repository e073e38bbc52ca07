# Databricks notebook source
# MAGIC %md
# MAGIC # Runtime self-check
# MAGIC Writes a deterministic batch to `ops.selfcheck`, reads it back by name and compares it with
# MAGIC the expected count and sum computed in plain Python. Thin: everything is a library call.

# COMMAND ----------

from lakehouse.common.config import load_settings
from lakehouse.common.spark import get_spark
from lakehouse.ops.selfcheck import run_selfcheck

settings = load_settings()
spark = get_spark(settings, app_name="notebook-selfcheck")

# COMMAND ----------

result = run_selfcheck(spark, settings, run_id="notebook", rows=10_000, seed=42)
print(result, "OK" if result.ok else "MISMATCH")

# COMMAND ----------

spark.sql("SELECT bucket, count(*) AS n, sum(amount) AS amount FROM ops.selfcheck "
          "WHERE run_id = 'notebook' GROUP BY bucket ORDER BY bucket").show()
