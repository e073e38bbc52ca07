"""Security of the lakehouse: column classification, envelope encryption with per-customer data keys,
pseudonyms, free-text redaction and the silver scan (docs/security.md)."""
