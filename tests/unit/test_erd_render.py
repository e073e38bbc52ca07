"""The pure parts of the ERD generator (lakehouse/oltp/erd.py), on a hand-made model: no database."""

from __future__ import annotations

import re
import shutil

import pytest

from lakehouse.oltp import erd
from lakehouse.oltp.erd import Column, ForeignKey, Table

# What every Mermaid release since 9 accepts, line by line, for what the generator writes.
_ID = r"[A-Za-z_][A-Za-z0-9_]*"
_WORD = r"[A-Za-z_][A-Za-z0-9\-_\[\]()]*"
MERMAID_LINE = re.compile("|".join([
    r"^erDiagram$",
    r"^    %% [^\n]*$",
    rf"^    {_ID} \{{$",
    rf'^        {_WORD} {_WORD}( (PK|FK|UK)(, (PK|FK|UK))*)?( "[^"]*")?$',
    r"^    \}$",
    rf'^    {_ID} (\|\||\|o)(--|\.\.)(o\||o\{{) {_ID} : "[^"]+"$',
]))


def assert_valid_mermaid(source: str) -> None:
    lines = source.rstrip("\n").split("\n")
    assert lines[0] == "erDiagram"
    bad = [line for line in lines if not MERMAID_LINE.match(line)]
    assert not bad, f"lines Mermaid may not parse: {bad}"


def _model() -> list[Table]:
    parent = Table("shop", "orders", (Column("order_id", "bigint", True),
                                      Column("created_at", "timestamp with time zone", True)),
                   primary_key=("order_id", "created_at"), partition_key="RANGE (created_at)")
    currencies = Table("ref", "currencies", (Column("currency_code", "character(3)", True),
                                             Column("rate", "numeric(20,10)", True)),
                       primary_key=("currency_code",))
    child = Table("shop", "refunds", (
        Column("refund_id", "bigint", True), Column("order_id", "bigint", True),
        Column("order_created_at", "timestamp with time zone", True), Column("currency_code", "character(3)", False),
        Column("note", "character varying(20)", False)),
        primary_key=("refund_id",), unique_keys=(("refund_id", "note"),),
        foreign_keys=(ForeignKey("refunds_order_fkey", ("order_id", "order_created_at"), "shop", "orders",
                                 ("order_id", "created_at")),
                      ForeignKey("refunds_currency_code_fkey", ("currency_code",), "ref", "currencies",
                                 ("currency_code",))))
    label = Table("labels", "order_labels", (Column("order_id", "bigint", True),
                                             Column("order_created_at", "timestamp with time zone", True)),
                  primary_key=("order_id", "order_created_at"),
                  foreign_keys=(ForeignKey("l_fkey", ("order_id", "order_created_at"), "shop", "orders",
                                           ("order_id", "created_at")),))
    pans = Table("vault", "pans", (Column("token", "text", True), Column("blob", "bytea", True)),
                 primary_key=("token",))
    return [currencies, parent, child, label, pans]


def test_types_are_spelled_compactly_and_as_mermaid_words() -> None:
    assert erd.short_type("timestamp with time zone") == "timestamptz"
    assert erd.short_type("character(3)") == "char(3)"
    assert erd.short_type("character varying(20)") == "varchar(20)"
    assert erd.short_type("character varying[]") == "varchar[]"
    assert erd.short_type("numeric(20,10)") == "numeric(20,10)"
    assert erd.mermaid_type("numeric(20,10)") == ("numeric", "numeric(20,10)")
    assert erd.mermaid_type("double precision") == ("float8", None)
    assert erd.mermaid_type("timestamp with time zone") == ("timestamptz", None)


def test_cardinality_comes_from_nullability_and_uniqueness_of_the_fk_columns() -> None:
    rels = {(r.child.name, r.fk.name): r for r in erd.relationships(_model())}
    order = rels[("refunds", "refunds_order_fkey")]
    assert (order.parent_optional, order.child_at_most_one, order.identifying) == (False, False, False)
    currency = rels[("refunds", "refunds_currency_code_fkey")]
    assert currency.parent_optional is True  # currency_code is nullable
    label = rels[("order_labels", "l_fkey")]
    assert (label.parent_optional, label.child_at_most_one, label.identifying) == (False, True, True)


def test_mermaid_is_exact_and_parseable() -> None:
    text = erd.render_mermaid(_model())
    assert_valid_mermaid(text)
    lines = text.splitlines()
    assert '    shop_orders ||..o{ shop_refunds : "order_id, order_created_at"' in lines
    assert '    ref_currencies |o..o{ shop_refunds : "currency_code"' in lines
    assert '    shop_orders ||--o| labels_order_labels : "order_id, order_created_at"' in lines
    assert '        numeric rate "NOT NULL; numeric(20,10)"' in lines
    assert '        timestamptz created_at PK "partition key: RANGE (created_at)"' in lines
    assert '        bigint refund_id PK, UK "UK(refund_id, note)"' in lines
    assert '        varchar(20) note UK' in lines
    assert '        bytea blob "VAULT restricted; NOT NULL"' in lines
    assert "    %% shop.orders: partitioned by RANGE (created_at)" in lines
    assert text == erd.render_mermaid(_model())  # deterministic


def test_entities_are_valid_identifiers_and_never_collide() -> None:
    assert erd.entity_id(Table("payments", "charges", ())) == "payments_charges"
    assert erd.entity_id(Table("my-schema", "1st table", ())) == "my_schema_1st_table"
    clash = [Table("a_b", "c", (Column("x", "int", True),)), Table("a", "b_c", (Column("x", "int", True),))]
    with pytest.raises(erd.ErdError, match="same diagram entity"):
        erd.render_mermaid(clash)


def test_a_foreign_key_leaving_the_diagram_is_an_error() -> None:
    orphan = Table("shop", "x", (Column("y", "int", True),),
                   foreign_keys=(ForeignKey("x_y_fkey", ("y",), "elsewhere", "ys", ("y",)),))
    with pytest.raises(erd.ErdError, match="outside the diagram"):
        erd.relationships([orphan])


def test_dot_has_fixed_size_cells_crows_feet_and_a_vault_cluster() -> None:
    dot = erd.render_dot(_model())
    assert dot == erd.render_dot(_model())
    assert 'subgraph cluster_vault {' in dot and 'style="filled,dashed"' in dot
    # every table cell has a fixed size: the layout never depends on the fonts of the machine
    assert dot.count("<TD ") == dot.count('FIXEDSIZE="TRUE"')
    assert ("shop_orders:order_id -> shop_refunds:order_id [arrowtail=teetee, arrowhead=crowodot"
            in dot)
    assert "shop_orders:order_id -> labels_order_labels:order_id [arrowtail=teetee, arrowhead=teeodot" in dot
    assert "ref_currencies:currency_code -> shop_refunds:currency_code [arrowtail=teeodot" in dot


@pytest.mark.skipif(shutil.which("dot") is None, reason="graphviz is not installed (make setup installs it)")
def test_svg_is_byte_stable_and_stamped() -> None:
    dot = erd.render_dot(_model())
    svg = erd.render_svg(dot)
    assert svg == erd.render_svg(dot)
    assert "Generated by graphviz" not in svg
    assert erd.svg_stamp(svg) == (erd.dot_version(), erd.dot_digest(dot))
    assert svg.startswith("<?xml") and svg.rstrip().endswith("</svg>")
    assert "vault.pans" in svg and "shop.orders" in svg


def test_erd_md_embeds_the_diagram_and_links_the_svg() -> None:
    md = erd.render_erd_md(_model())
    assert "[erd.svg](erd.svg)" in md and "lakehouse docs erd" in md
    block = md.split("```mermaid\n", 1)[1].split("\n```", 1)[0] + "\n"
    assert block == erd.render_mermaid(_model())


def test_docs_verb_defaults_to_tables_which_needs_no_database() -> None:
    from lakehouse.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["docs"]).which == "tables"
    assert parser.parse_args(["docs", "erd"]).which == "erd"
    assert parser.parse_args(["docs", "all"]).which == "all"
    with pytest.raises(SystemExit):
        parser.parse_args(["docs", "everything"])


def test_docs_erd_without_a_database_fails_saying_what_to_run(capsys: pytest.CaptureFixture[str],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from lakehouse.cli import main
    from tests.conftest import free_ports

    monkeypatch.setenv("LAKEHOUSE_PG_PASSWORD", "not-used")
    monkeypatch.setenv("LAKEHOUSE__SERVICES__POSTGRES__PORT", str(free_ports(1)[0]))  # nothing listens there
    assert main(["docs", "erd"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: docs erd: ")
    assert "`lakehouse oltp migrate`" in err
