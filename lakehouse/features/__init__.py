"""Fraud features: feature tables from silver, the Feast store (registry, Redis), online reads."""
