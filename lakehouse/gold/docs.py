"""`docs/olap/star_schema.md`, generated from the gold table specs (a unit test compares the committed file).

The diagram's relationships are derived from column names: a fact column named in `REFERENCES` points
at that dimension's key. A reference is mandatory (`||`) when the fact column is NOT NULL, which is
the case for every key a fact repoints to an unknown member; otherwise optional (`o|`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pyspark.sql.types import DecimalType, StructField

from lakehouse.common.config import project_root
from lakehouse.common.tables import TableSpec
from lakehouse.gold import tables as t

STAR_SCHEMA_MD = Path("docs") / "olap" / "star_schema.md"

# fact column -> (dimension, the dimension's key column) it joins to
REFERENCES: dict[str, tuple[TableSpec, str]] = {
    "date_key": (t.DIM_DATE, "date_key"),
    "time_key": (t.DIM_TIME, "time_key"),
    "merchant_sk": (t.DIM_MERCHANT, "merchant_sk"),
    "customer_sk": (t.DIM_CUSTOMER, "customer_sk"),
    "payment_method_key": (t.DIM_PAYMENT_METHOD, "payment_method_id"),
    "country_code": (t.DIM_GEOGRAPHY, "country_code"),
    "currency_code": (t.DIM_CURRENCY, "currency_code"),
    "device_type": (t.DIM_DEVICE, "device_type"),
    "plan_id": (t.DIM_PLAN, "plan_id"),
}

# The column(s) that identify a fact row, where one id does (the grain's key); the subscription
# events' grain (subscription x event) has none, so none is marked.
FACT_KEYS: dict[str, tuple[str, ...]] = {
    t.FACT_PAYMENTS.name: ("charge_id",),
    t.FACT_REFUNDS.name: ("refund_id",),
    t.FACT_DISPUTES.name: ("dispute_id",),
    t.FACT_BALANCE.name: ("txn_id",),
}


@dataclass(frozen=True)
class Reference:
    """`fact.column` -> `dimension.key`; `mandatory` when the fact column is NOT NULL."""

    fact: TableSpec
    column: str
    dimension: TableSpec
    key: str
    mandatory: bool


def dimension_key(dim: TableSpec) -> str:
    """A dimension's key: its first column (NOT NULL in every gold dimension)."""
    return dim.schema.fields[0].name


def references() -> list[Reference]:
    """Every fact -> dimension reference, in fact then column order."""
    return [Reference(fact, f.name, REFERENCES[f.name][0], REFERENCES[f.name][1], not f.nullable)
            for fact in t.FACTS for f in fact.schema.fields if f.name in REFERENCES]


def _mermaid_type(field: StructField) -> tuple[str, str]:
    """Mermaid's attribute type (letters, digits, `_`, no comma) and a comment carrying the rest."""
    if isinstance(field.dataType, DecimalType):
        return "decimal", f"({field.dataType.precision},{field.dataType.scale})"
    return field.dataType.simpleString(), ""


def _entity(table: TableSpec, primary: tuple[str, ...], foreign: set[str]) -> Iterator[str]:
    yield f"    {table.name} {{"
    for f in table.schema.fields:
        type_name, comment = _mermaid_type(f)
        marks = ",".join(m for m, on in (("PK", f.name in primary), ("FK", f.name in foreign)) if on)
        parts = [type_name, f.name] + ([marks] if marks else []) + ([f'"{comment}"'] if comment else [])
        yield "        " + " ".join(parts)
    yield "    }"


def render_mermaid() -> str:
    """The star schema as a Mermaid `erDiagram`: dimensions and facts with every column (keys marked)
    and each fact's references."""
    refs = references()
    lines = ["erDiagram"]
    for dim in t.DIMENSIONS:
        lines += _entity(dim, (dimension_key(dim),), set())
    for fact in t.FACTS:
        lines += _entity(fact, FACT_KEYS.get(fact.name, ()), {r.column for r in refs if r.fact == fact})
    for r in refs:
        label = r.column if r.column == r.key else f"{r.column} = {r.key}"
        lines.append(f"    {r.fact.name} }}o--{'||' if r.mandatory else 'o|'} {r.dimension.name} : \"{label}\"")
    return "\n".join(lines)


def physical_design(table: TableSpec) -> str:
    if table.cluster_by:
        return "liquid clustering by " + ", ".join(f"`{c}`" for c in table.cluster_by)
    if table.partition_by:
        return "partitioned by " + ", ".join(f"`{c}`" for c in table.partition_by)
    return "none"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_star_schema_md() -> str:
    """`docs/olap/star_schema.md`: the diagram, the references, and every gold table's grain and design."""
    kinds = ([("dimension", d) for d in t.DIMENSIONS] + [("fact", f) for f in t.FACTS]
             + [("aggregate", a) for a in t.AGGREGATES])
    out = ["# Gold star schema", "",
           "Generated from the gold table specs (lakehouse/gold/tables.py) by `lakehouse docs`; do not edit by "
           "hand. Every table is `gold.<name>`; column types and nullability in full are in "
           "[../tables.md](../tables.md); how the tables are built and used: [README.md](README.md).", "",
           "`PK`: a dimension's key (or a fact's row id); `FK`: a fact column that points at a dimension. "
           "`||`: the fact column is NOT NULL and always finds a member (an unknown member until the real one "
           "arrives); `o|`: it may be NULL or name no member.", "",
           "```mermaid", render_mermaid(), "```", "",
           "## References", "",
           "| fact column | dimension key | fact column nullable |", "|---|---|---|"]
    out += [f"| `{r.fact.name}.{r.column}` | `{r.dimension.name}.{r.key}` | {'no' if r.mandatory else 'yes'} |"
            for r in references()]
    out += ["", "## Tables", "", "| table | kind | grain | physical design |", "|---|---|---|---|"]
    out += [f"| `{table.full_name}` | {kind} | {_cell(table.comment)} | {physical_design(table)} |"
            for kind, table in kinds]
    out.append("")
    return "\n".join(out)


def write_star_schema_md(root: Path | None = None) -> Path:
    """Writes docs/olap/star_schema.md under `root` (the project root by default); returns its path."""
    path = (root or project_root()) / STAR_SCHEMA_MD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_star_schema_md())
    return path
