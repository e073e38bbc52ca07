"""Silver: sequence-safe CDC merge, SCD2, conformance, PII protection, data quality (issue 5)."""
