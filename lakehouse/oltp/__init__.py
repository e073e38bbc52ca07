"""OLTP: the PostgreSQL system of record — schema migrations, ACID operations, simulator, import, failover."""
