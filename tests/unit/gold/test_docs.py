"""docs/olap/star_schema.md is generated from the gold table specs and the reference map."""

from lakehouse.common.config import project_root
from lakehouse.gold import tables as t
from lakehouse.gold.docs import (
    FACT_KEYS,
    REFERENCES,
    STAR_SCHEMA_MD,
    dimension_key,
    references,
    render_mermaid,
    render_star_schema_md,
)


def test_committed_star_schema_matches_the_gold_specs() -> None:
    committed = (project_root() / STAR_SCHEMA_MD).read_text()
    assert committed == render_star_schema_md(), \
        "docs/olap/star_schema.md is stale: run `lakehouse docs` and commit it"


def test_every_reference_names_a_column_of_both_tables_with_the_same_type() -> None:
    facts_with = {column: [f.name for f in t.FACTS if column in f.schema.fieldNames()] for column in REFERENCES}
    for column, (dim, key) in REFERENCES.items():
        assert facts_with[column], f"no fact has the column {column}"
        assert key == dimension_key(dim), f"{dim.name}.{key} is not the dimension's key"
        for fact in (f for f in t.FACTS if f.name in facts_with[column]):
            assert fact.schema[column].dataType == dim.schema[key].dataType, f"{fact.name}.{column} vs {dim.name}.{key}"


def test_every_dimension_key_is_not_null_and_every_fact_key_exists() -> None:
    for dim in t.DIMENSIONS:
        assert not dim.schema.fields[0].nullable, dim.name
    for fact, keys in FACT_KEYS.items():
        spec = next(f for f in t.FACTS if f.name == fact)
        assert all(k in spec.schema.fieldNames() for k in keys), fact


def test_references_are_derived_from_the_fact_columns() -> None:
    refs = {(r.fact.name, r.column, r.dimension.name, r.key, r.mandatory) for r in references()}
    assert {r for r in refs if r[0] == "fact_payments"} == {
        ("fact_payments", "date_key", "dim_date", "date_key", True),
        ("fact_payments", "time_key", "dim_time", "time_key", True),
        ("fact_payments", "merchant_sk", "dim_merchant", "merchant_sk", True),
        ("fact_payments", "customer_sk", "dim_customer", "customer_sk", True),
        ("fact_payments", "payment_method_key", "dim_payment_method", "payment_method_id", True),
        ("fact_payments", "country_code", "dim_geography", "country_code", True),
        ("fact_payments", "device_type", "dim_device", "device_type", False),
        ("fact_payments", "currency_code", "dim_currency", "currency_code", False)}
    assert {r for r in refs if r[0] == "fact_subscription_events"} == {
        ("fact_subscription_events", "date_key", "dim_date", "date_key", True),
        ("fact_subscription_events", "customer_sk", "dim_customer", "customer_sk", True),
        ("fact_subscription_events", "plan_id", "dim_plan", "plan_id", False),
        ("fact_subscription_events", "currency_code", "dim_currency", "currency_code", False)}
    assert len(refs) == 8 + 3 + 3 + 3 + 4


def test_mermaid_lines() -> None:
    text = render_mermaid()
    assert text.startswith("erDiagram\n    dim_date {\n        int date_key PK\n")
    assert "        bigint merchant_sk FK\n" in text
    assert "        bigint charge_id PK\n" in text
    assert '        decimal amount "(23,4)"\n' in text
    assert '    fact_payments }o--|| dim_payment_method : "payment_method_key = payment_method_id"' in text
    assert '    fact_subscription_events }o--o| dim_plan : "plan_id"' in text
    attributes = [line.split() for line in text.splitlines() if line.startswith(" " * 8)]
    assert all(a[0].isidentifier() for a in attributes)  # Mermaid's types: no parentheses, no comma


def test_table_section_gives_grain_and_design() -> None:
    text = render_star_schema_md()
    assert ("| `gold.fact_payments` | fact | " + t.FACT_PAYMENTS.comment
            + " | liquid clustering by `date_key`, `merchant_id` |") in text
    assert "| `gold.agg_revenue_weekly` | aggregate | " in text and text.count(" | none |") == 9 + 5
