"""Operational tables of the platform itself: job runs and the runtime self-check."""
