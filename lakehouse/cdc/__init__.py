"""Change data capture: the Debezium PostgreSQL connector on Kafka Connect (`lakehouse cdc …`, docs/cdc.md)."""
