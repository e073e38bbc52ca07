"""security.classification: the rules' shape, every field the event generator emits is classified, and
docs/security.md shows the classification as generated. (The OLTP side is checked against the live
catalog in tests/integration/test_security.py.)"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest

from lakehouse.common.config import project_root
from lakehouse.events import FAMILIES
from lakehouse.events.generate import EventOptions, history_events
from lakehouse.oltp.simulator import SimConfig, build_history, build_world
from lakehouse.security.classification import (
    EVENT_TABLES,
    OLTP_TABLES,
    SECURITY_MD,
    TABLES,
    DataClass,
    Protection,
    UnclassifiedError,
    protected_columns,
    render_classification_md,
    splice_classification,
    table_rules,
    unclassified,
)


def test_one_rule_per_column_and_unique_silver_names() -> None:
    assert len({t.name for t in TABLES}) == len(TABLES)
    for t in TABLES:
        columns = [r.column for r in t.columns]
        assert len(columns) == len(set(columns)), t.name
        if any(r.protection is Protection.ENCRYPT for r in t.columns):
            assert t.subject in columns, f"{t.name}: encrypted columns need the customer column"
        assert all(r.protection is Protection.KEEP for r in t.columns if r.data_class is DataClass.PUBLIC)
    assert {t.name for t in EVENT_TABLES} == set(FAMILIES)
    assert {t.source.split(".")[0] for t in OLTP_TABLES} == {"ref", "payments", "labels"}


def test_lookups() -> None:
    assert table_rules("payments.customers") is table_rules("customers")
    assert table_rules("ref_currencies").source == "ref.currencies"
    assert table_rules("fraud_ground_truth").source == "labels.fraud_ground_truth"
    assert {c: (r.protection.value, r.output_columns) for c, r in protected_columns("customers").items()} == {
        "external_ref": ("pseudonym", ("external_ref_pseudo",)),
        "email": ("encrypt+pseudonym", ("email_enc", "email_pseudo")),
        "full_name": ("encrypt+pseudonym", ("full_name_enc", "full_name_pseudo")),
        "phone": ("encrypt+pseudonym", ("phone_enc", "phone_pseudo"))}
    assert sorted(protected_columns("cards")) == ["exp_month", "exp_year"]
    assert sorted(protected_columns("charges")) == ["description", "ip_address"]
    assert sorted(protected_columns("feedback")) == ["payload.text"]
    assert unclassified("charges", ["charge_id", "ip_address", "new_column"]) == ["new_column"]
    assert unclassified("feedback", ["payload.survey.id", "payload.new_field"]) == ["payload.new_field"]
    with pytest.raises(UnclassifiedError, match=r"table 'nope' is not classified: add it to lakehouse/security"):
        table_rules("nope")


def leaf_paths(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield from leaf_paths(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for value in node:
            yield from leaf_paths(value, f"{path}[]")
    else:
        yield path


def test_every_field_the_event_generator_emits_is_classified() -> None:
    cfg = SimConfig(seed=3, days=3, end=dt.date(2026, 3, 1), merchants=6, customers=80)
    world = build_world(cfg)
    seen: dict[str, set[str]] = defaultdict(set)
    for event in history_events(cfg, world, build_history(cfg, world), EventOptions(pii_share=1.0)):
        seen[event.family] |= {p.replace("[]", "") for p in leaf_paths(json.loads(event.value), "")}
    assert set(seen) == set(FAMILIES)
    missing = {family: unclassified(family, sorted(paths)) for family, paths in seen.items()}
    assert missing == {family: [] for family in FAMILIES}, "classify these event fields in classification.py"


def test_docs_security_md_shows_the_classification() -> None:
    committed = (project_root() / SECURITY_MD).read_text()
    assert committed == splice_classification(committed), \
        "docs/security.md is stale: run `python -m lakehouse.security.classification` and commit it"
    assert render_classification_md() in committed
