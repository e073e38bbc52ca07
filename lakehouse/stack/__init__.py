"""The local service stack: private PostgreSQL, Kafka (KRaft), Kafka Connect + Debezium and Redis."""
