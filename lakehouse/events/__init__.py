"""App / web / mobile events: clickstream, sessions, application logs and customer feedback, generated
from the simulated payments (the same customers, sessions that lead to checkouts, errors around failed
payments) and produced to Kafka with kafka-python. See docs/events.md.

- `lakehouse.events.generate`: pure generation, (SimConfig, World, History) -> events; no Kafka.
- `lakehouse.events.producer`: topics, the idempotent producer, the live-traffic sink.
"""

from __future__ import annotations

SCHEMA_VERSION = 1
FAMILIES = ("clickstream", "sessions", "app_logs", "feedback")


def topic_name(prefix: str, family: str) -> str:
    """`<events.topic_prefix>.<family>`, e.g. `events.clickstream`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown event family {family!r}; expected one of {', '.join(FAMILIES)}")
    return f"{prefix}.{family}"
