"""The committed ERD and schema doc against the live, migrated OLTP schema (the `oltp` fixture)."""

from __future__ import annotations

import re
import shutil
from typing import Any

import pytest

from lakehouse.common.config import project_root
from lakehouse.oltp import erd
from tests.unit.test_erd_render import assert_valid_mermaid

STALE = "{} differs from the migrated schema: run `lakehouse docs erd` against a migrated database and commit it"
SCHEMA_MD = project_root() / "docs" / "oltp" / "schema.md"


@pytest.fixture(scope="module")
def conn(oltp: Any) -> Any:
    from lakehouse.oltp.db import connect

    with connect(oltp, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def tables(conn: Any) -> list[erd.Table]:
    return erd.introspect(conn)


def _entities(mermaid: str) -> set[str]:
    return set(re.findall(r"^    ([A-Za-z_][A-Za-z0-9_]*) \{$", mermaid, flags=re.M))


def test_committed_erd_md_matches_the_live_schema(tables: list[erd.Table]) -> None:
    committed = (project_root() / erd.ERD_MD).read_text()
    assert committed == erd.render_erd_md(tables), STALE.format(erd.ERD_MD)


def test_committed_svg_was_generated_from_the_live_schema(tables: list[erd.Table]) -> None:
    """Needs no graphviz: the SVG records the digest of the DOT source it was rendered from."""
    stamp = erd.svg_stamp((project_root() / erd.ERD_SVG).read_text())
    assert stamp is not None, STALE.format(erd.ERD_SVG)
    assert stamp[1] == erd.dot_digest(erd.render_dot(tables)), STALE.format(erd.ERD_SVG)


def test_committed_svg_is_exactly_what_graphviz_renders(tables: list[erd.Table]) -> None:
    assert shutil.which("dot"), "graphviz `dot` is missing: run `make setup` (it installs graphviz)"
    committed = (project_root() / erd.ERD_SVG).read_text()
    stamp = erd.svg_stamp(committed)
    assert stamp is not None, STALE.format(erd.ERD_SVG)
    if stamp[0] != erd.dot_version():
        pytest.skip(f"erd.svg was rendered by graphviz {stamp[0]}, this machine has {erd.dot_version()}: "
                    "layouts may differ (the digest test above still checks the content)")
    assert committed == erd.render_svg(erd.render_dot(tables)), STALE.format(erd.ERD_SVG)


def test_every_table_once_and_no_partitions(conn: Any, tables: list[erd.Table]) -> None:
    rows = conn.execute(
        "SELECT n.nspname, c.relname, c.relispartition FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = ANY(%s) AND c.relkind IN ('r', 'p')", (list(erd.SCHEMAS),)).fetchall()
    expected = {f"{s}_{t}" for s, t, part in rows if not part}
    partitions = {f"{s}_{t}" for s, t, part in rows if part}
    assert {"payments_charges_default", "payments_balance_transactions_default"} <= partitions
    assert any(re.fullmatch(r"payments_charges_\d{4}_\d{2}", p) for p in partitions)

    mermaid = erd.render_mermaid(tables)
    assert_valid_mermaid(mermaid)
    assert _entities(mermaid) == expected
    assert {"ref_currencies", "payments_charges", "payments_balance_transactions", "labels_fraud_ground_truth",
            "vault_card_pans"} <= expected
    svg = (project_root() / erd.ERD_SVG).read_text()
    for part in partitions:
        assert part not in mermaid and part not in svg


def test_new_partitions_do_not_change_the_diagram(conn: Any, tables: list[erd.Table]) -> None:
    with conn.transaction(force_rollback=True):
        made = conn.execute("SELECT payments.ensure_month_partitions('charges', '2019-01-01', '2019-03-01')").fetchone()
        assert made == (3,)
        assert erd.introspect(conn) == tables


def test_known_relationships_and_markers(tables: list[erd.Table]) -> None:
    lines = erd.render_mermaid(tables).splitlines()
    # composite FK to the partitioned charges: each refund has exactly one charge, a charge 0..n refunds
    assert '    payments_charges ||..o{ payments_refunds : "charge_id, charge_created_at"' in lines
    # nullable composite FK: an open invoice has no charge yet
    assert '    payments_charges |o..o{ payments_invoices : "charge_id, charge_created_at"' in lines
    # the FK is the primary key: one label per charge, identifying
    assert '    payments_charges ||--o| labels_fraud_ground_truth : "charge_id, charge_created_at"' in lines
    # the subtype composite FK (payment_method_id, kind) contains the subtype's primary key
    assert '    payments_payment_methods ||--o| payments_cards : "payment_method_id, kind"' in lines
    assert '    payments_cards ||--o| vault_card_pans : "token"' in lines
    assert '        text token PK, FK "VAULT restricted"' in lines
    assert '        timestamptz created_at PK "partition key: RANGE (created_at)"' in lines
    assert '        bigint terminal_id FK' in lines


def _index_table_names(text: str) -> list[str]:
    section = text.split("\n## Indexes\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z0-9_]+)` \|", section, flags=re.M)


def test_schema_doc_justifies_every_index(conn: Any) -> None:
    text = SCHEMA_MD.read_text()
    live = {i.name: i for i in erd.list_indexes(conn)}
    assert {"charges_pkey", "charges_open", "ip_networks_gist", "card_pans_pkey"} <= set(live)
    missing = sorted(f"{i.schema}.{i.table}: {i.name}" for i in live.values() if f"`{i.name}`" not in text)
    assert not missing, f"docs/oltp/schema.md does not justify these indexes (add a row to its index table): {missing}"
    documented = _index_table_names(text)
    assert len(documented) == len(set(documented)), "an index is listed twice in docs/oltp/schema.md"
    stale = sorted(set(documented) - set(live))
    assert not stale, f"docs/oltp/schema.md lists indexes the schema does not have: {stale}"
