"""payments-lakehouse: payments OLTP -> CDC -> Kafka -> Spark/Delta (bronze, silver, gold) -> features, models."""

__version__ = "0.1.0"
