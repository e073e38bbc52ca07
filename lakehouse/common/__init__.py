"""Shared runtime: the config loader, the Spark session factory, the table registry, job plumbing."""
