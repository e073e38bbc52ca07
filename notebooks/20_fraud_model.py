# Databricks notebook source
# MAGIC %md
# MAGIC # Fraud model: champion, challenger, scores
# MAGIC The registry's aliases and their history, the champion's test metrics, and today's declined payments.
# MAGIC Thin: everything is a library call or a query.

# COMMAND ----------

from lakehouse.common.config import load_settings
from lakehouse.common.spark import get_spark
from lakehouse.ml.registry import alias_version
from lakehouse.ml.tracking import client

settings = load_settings()
spark = get_spark(settings, app_name="notebook-fraud-model")
mlflow_client = client(settings)

# COMMAND ----------

for alias in ("champion", "challenger"):
    version = alias_version(mlflow_client, settings.ml.model_name, alias)
    if version is not None:
        run = mlflow_client.get_run(version.run_id)
        print(alias, version.version, {k: round(v, 4) for k, v in run.data.metrics.items() if k.startswith("test_")})

# COMMAND ----------

spark.sql("SELECT changed_at, alias, action, from_version, to_version, reason FROM ops.model_alias_history "
          "ORDER BY changed_at").show(truncate=False)

# COMMAND ----------

spark.sql("SELECT path, decision, count(*) AS payments, round(avg(score), 4) AS mean_score "
          "FROM gold.fact_payment_scores GROUP BY path, decision ORDER BY path, decision").show()
