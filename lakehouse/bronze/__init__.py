"""Bronze: raw, append-only ingestion from Kafka (issue 4)."""
