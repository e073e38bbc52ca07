"""The OLTP entity-relationship diagram, generated from the live schema: `lakehouse docs erd`.

`introspect` reads the catalogs (pg_catalog only: unlike information_schema it shows every table to
every role, the vault included) of the schemas `ref`, `payments`, `labels` and `vault`. A partitioned
table appears once, as its parent; its partitions never do. The pure renderers turn that model into

- `docs/oltp/erd.md`: a Mermaid `erDiagram` (entities named `<schema>_<table>`);
- `docs/oltp/erd.svg`: Graphviz `dot` run on a DOT source built from the same model.

Both are deterministic: entities in schema order then by name, columns in table order, relationships
sorted. The SVG layout does not depend on the fonts of the machine (every cell has a fixed size computed
here, edges carry no text labels), graphviz's own version comment is replaced by one naming the
graphviz version and the SHA-256 of the DOT source, so a test can tell a stale diagram from a
different graphviz build.

Cardinalities come from the foreign key columns: the referenced side is "exactly one" when every FK
column is NOT NULL, else "zero or one"; the referencing side is "zero or one" when the FK columns
contain a unique key (primary key, unique constraint or plain unique index) of the referencing table,
else "zero or more". A relationship is identifying (solid line) when the referencing table's primary
key shares a column with the foreign key, else non-identifying (dashed).
"""

from __future__ import annotations

import hashlib
import html
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMAS = ("ref", "payments", "labels", "vault")
VAULT_SCHEMAS = frozenset({"vault"})
ERD_MD = Path("docs") / "oltp" / "erd.md"
ERD_SVG = Path("docs") / "oltp" / "erd.svg"

SCHEMA_TITLES = {
    "ref": "ref: reference data",
    "payments": "payments: parties, methods, charges, ledger",
    "labels": "labels: fraud ground truth",
    "vault": "vault: RESTRICTED (PAN ciphertext; vault_reader only; never in CDC)",
}


class ErdError(RuntimeError):
    pass


# --- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Column:
    name: str
    type: str  # format_type(), e.g. "timestamp with time zone", "numeric(20,10)"
    not_null: bool


@dataclass(frozen=True)
class ForeignKey:
    name: str
    columns: tuple[str, ...]
    ref_schema: str
    ref_table: str
    ref_columns: tuple[str, ...]


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    unique_keys: tuple[tuple[str, ...], ...] = ()  # plain-column unique keys other than the primary key
    foreign_keys: tuple[ForeignKey, ...] = ()
    partition_key: str | None = None  # pg_get_partkeydef(), e.g. "RANGE (created_at)"

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def fk_columns(self) -> frozenset[str]:
        return frozenset(c for fk in self.foreign_keys for c in fk.columns)

    @property
    def unique_columns(self) -> frozenset[str]:
        return frozenset(c for key in self.unique_keys for c in key)


@dataclass(frozen=True)
class Relationship:
    parent: Table
    child: Table
    fk: ForeignKey
    parent_optional: bool  # some FK column is nullable: a child row may have no parent
    child_at_most_one: bool  # the FK columns contain a unique key of the child
    identifying: bool  # the child's primary key shares a column with the FK


# --- introspection -------------------------------------------------------------------------------
_TABLES_SQL = """
SELECT c.oid, n.nspname, c.relname, CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p') AND NOT c.relispartition
"""
_COLUMNS_SQL = """
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull
  FROM pg_attribute a
 WHERE a.attrelid = ANY(%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
 ORDER BY a.attrelid, a.attnum
"""
# Unique keys on plain columns (no expression, no predicate): primary keys, UNIQUE constraints and
# unique indexes. On a partitioned table these are its partitioned indexes.
_KEYS_SQL = """
SELECT x.indrelid, x.indisprimary,
       ARRAY(SELECT a.attname FROM unnest(x.indkey::int2[]) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.ord)
  FROM pg_index x
 WHERE x.indrelid = ANY(%(oids)s) AND x.indisunique AND x.indexprs IS NULL AND x.indpred IS NULL
"""
# Foreign keys declared on the tables themselves (conparentid = 0): not the copies PostgreSQL keeps
# for each partition of a referenced or referencing partitioned table.
_FKS_SQL = """
SELECT con.conrelid, con.conname, rn.nspname, rc.relname,
       ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum ORDER BY k.ord),
       ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
               JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum ORDER BY k.ord)
  FROM pg_constraint con
  JOIN pg_class rc ON rc.oid = con.confrelid JOIN pg_namespace rn ON rn.oid = rc.relnamespace
 WHERE con.contype = 'f' AND con.conrelid = ANY(%(oids)s) AND con.conparentid = 0
"""
# Every index of the tables of the schemas, except those of partitions (each partition carries a copy
# of its parent's partitioned indexes).
_INDEXES_SQL = """
SELECT n.nspname, t.relname, i.relname, x.indisprimary, x.indisunique, pg_get_indexdef(i.oid)
  FROM pg_index x
  JOIN pg_class i ON i.oid = x.indexrelid
  JOIN pg_class t ON t.oid = x.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
 WHERE n.nspname = ANY(%(schemas)s) AND NOT t.relispartition AND NOT i.relispartition
 ORDER BY n.nspname, t.relname, i.relname
"""


def introspect(conn: Any, schemas: tuple[str, ...] = SCHEMAS) -> list[Table]:
    """The tables of `schemas` in the connected database, in schema order (as given) then by name."""
    names = list(schemas)
    tables = {oid: (schema, name, partkey) for oid, schema, name, partkey
              in conn.execute(_TABLES_SQL, {"schemas": names}).fetchall()}
    oids = list(tables)
    columns: dict[int, list[Column]] = {oid: [] for oid in oids}
    for oid, name, type_, not_null in conn.execute(_COLUMNS_SQL, {"oids": oids}).fetchall():
        columns[oid].append(Column(name, type_, bool(not_null)))
    pks: dict[int, tuple[str, ...]] = {}
    uniques: dict[int, set[tuple[str, ...]]] = {oid: set() for oid in oids}
    for oid, primary, cols in conn.execute(_KEYS_SQL, {"oids": oids}).fetchall():
        if primary:
            pks[oid] = tuple(cols)
        else:
            uniques[oid].add(tuple(cols))
    fks: dict[int, list[ForeignKey]] = {oid: [] for oid in oids}
    for oid, name, ref_schema, ref_table, cols, ref_cols in conn.execute(_FKS_SQL, {"oids": oids}).fetchall():
        fks[oid].append(ForeignKey(name, tuple(cols), ref_schema, ref_table, tuple(ref_cols)))
    result = [
        Table(schema=schema, name=name, columns=tuple(columns[oid]), primary_key=pks.get(oid, ()),
              unique_keys=tuple(sorted(uniques[oid])),
              foreign_keys=tuple(sorted(fks[oid], key=lambda fk: (fk.columns, fk.name))),
              partition_key=partkey)
        for oid, (schema, name, partkey) in tables.items()]
    return sorted(result, key=lambda t: (names.index(t.schema), t.name))


@dataclass(frozen=True)
class Index:
    schema: str
    table: str
    name: str
    primary: bool
    unique: bool
    definition: str


def list_indexes(conn: Any, schemas: tuple[str, ...] = SCHEMAS) -> list[Index]:
    """Every index of the tables of `schemas` (partitioned indexes once; partitions' copies left out)."""
    return [Index(*row) for row in conn.execute(_INDEXES_SQL, {"schemas": list(schemas)}).fetchall()]


# --- relationships ---------------------------------------------------------------------------------
def relationships(tables: list[Table]) -> list[Relationship]:
    """Every foreign key between two of `tables`, sorted by referencing table, then FK columns."""
    by_name = {(t.schema, t.name): t for t in tables}
    out = []
    for child in tables:
        for fk in child.foreign_keys:
            parent = by_name.get((fk.ref_schema, fk.ref_table))
            if parent is None:
                raise ErdError(f"{child.qualified}.{fk.name} references {fk.ref_schema}.{fk.ref_table}, "
                               f"which is outside the diagram's schemas")
            nullable = {c.name for c in child.columns if not c.not_null}
            keys = [child.primary_key, *child.unique_keys] if child.primary_key else list(child.unique_keys)
            out.append(Relationship(
                parent=parent, child=child, fk=fk,
                parent_optional=any(c in nullable for c in fk.columns),
                child_at_most_one=any(key and set(key) <= set(fk.columns) for key in keys),
                identifying=bool(set(child.primary_key) & set(fk.columns))))
    return out


# --- Mermaid ---------------------------------------------------------------------------------------
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What every Mermaid release since 9 accepts as an attribute type or name (newer ones accept more).
_MERMAID_WORD = re.compile(r"^[A-Za-z_][A-Za-z0-9\-_\[\]()]*$")
_TYPE_ALIASES = (
    ("timestamp with time zone", "timestamptz"), ("timestamp without time zone", "timestamp"),
    ("time with time zone", "timetz"), ("time without time zone", "time"),
    ("character varying", "varchar"), ("character", "char"), ("double precision", "float8"),
    ("bit varying", "varbit"),
)


def entity_id(table: Table) -> str:
    """The Mermaid / DOT identifier of a table: `<schema>_<table>`, e.g. `payments_charges`."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", f"{table.schema}_{table.name}")
    return ident if _IDENT.match(ident) else f"_{ident}"


def short_type(pg_type: str) -> str:
    """A compact spelling of a format_type() result: `timestamptz`, `char(3)`, `numeric(20,10)`."""
    for long, short in _TYPE_ALIASES:
        if pg_type == long or pg_type.startswith((long + "(", long + "[")):
            return short + pg_type[len(long):]
    return pg_type


def mermaid_type(pg_type: str) -> tuple[str, str | None]:
    """(Mermaid attribute type, the exact type when Mermaid cannot spell it, else None)."""
    short = short_type(pg_type)
    if _MERMAID_WORD.match(short):
        return short, None
    word = re.sub(r"[^A-Za-z0-9_]", "_", re.split(r"[(\[ ]", short, maxsplit=1)[0]) or "type"
    return (word if _MERMAID_WORD.match(word) else f"t_{word}"), short


def _markers(table: Table, column: Column) -> list[str]:
    keys = []
    if column.name in table.primary_key:
        keys.append("PK")
    if column.name in table.fk_columns:
        keys.append("FK")
    if column.name in table.unique_columns:
        keys.append("UK")
    return keys


def _partition_columns(table: Table) -> set[str]:
    if not table.partition_key:
        return set()
    inner = table.partition_key[table.partition_key.find("(") + 1: table.partition_key.rfind(")")]
    return {part.strip().strip('"') for part in inner.split(",")}


def _notes(table: Table, column: Column, exact_type: str | None) -> list[str]:
    notes = []
    if table.schema in VAULT_SCHEMAS:
        notes.append("VAULT restricted")
    if column.not_null and column.name not in table.primary_key:
        notes.append("NOT NULL")
    if exact_type:
        notes.append(exact_type)
    notes += [f"UK({', '.join(key)})" for key in table.unique_keys if len(key) > 1 and key[0] == column.name]
    if column.name in _partition_columns(table):
        notes.append(f"partition key: {table.partition_key}")
    return notes


def _mermaid_card(optional: bool, many: bool, side: str) -> str:
    if side == "left":  # the referenced (parent) side
        return "|o" if optional else "||"
    return "o{" if many else "o|"


def render_mermaid(tables: list[Table]) -> str:
    """The `erDiagram` source (no code fence), one line per attribute and relationship."""
    ids = [entity_id(t) for t in tables]
    if len(set(ids)) != len(ids):
        raise ErdError(f"two tables map to the same diagram entity: {sorted(i for i in ids if ids.count(i) > 1)}")
    out = ["erDiagram"]
    schema = None
    for table in tables:
        if table.schema != schema:
            schema = table.schema
            out.append(f"    %% schema {SCHEMA_TITLES.get(schema, schema)}")
        if table.partition_key:
            out.append(f"    %% {table.qualified}: partitioned by {table.partition_key}")
        out.append(f"    {entity_id(table)} {{")
        for column in table.columns:
            type_word, exact = mermaid_type(column.type)
            name = column.name if _MERMAID_WORD.match(column.name) else f"`{column.name}`"
            line = f"        {type_word} {name}"
            keys = _markers(table, column)
            if keys:
                line += " " + ", ".join(keys)
            notes = _notes(table, column, exact)
            if notes:
                line += ' "' + "; ".join(notes).replace('"', "'") + '"'
            out.append(line)
        out.append("    }")
    for rel in relationships(tables):
        left = _mermaid_card(rel.parent_optional, False, "left")
        right = _mermaid_card(False, not rel.child_at_most_one, "right")
        line_style = "--" if rel.identifying else ".."
        out.append(f"    {entity_id(rel.parent)} {left}{line_style}{right} {entity_id(rel.child)} : "
                   f"\"{', '.join(rel.fk.columns)}\"")
    return "\n".join(out) + "\n"


# --- DOT / SVG -------------------------------------------------------------------------------------
FONT = "Courier"  # monospace: the rows are aligned text; SVG viewers fall back to any monospace font
FONT_SIZE = 10
CHAR_W = 6.6  # points per character at FONT_SIZE (Courier is 0.6 em; the rest is slack for other fonts)
ROW_H = 17
HEAD_H = 22
PAD = 10
SCHEMA_STYLE = {
    "ref": ("#eef3fb", "#4a6fa5", "#d6e2f5"),
    "payments": ("#f4f8ef", "#5b8c3a", "#dcebcf"),
    "labels": ("#fbf6ea", "#a57c1b", "#f2e3bd"),
    "vault": ("#fdecec", "#b22222", "#f4bcbc"),
}  # cluster fill, border / edge colour, table header fill
DEFAULT_STYLE = ("#f5f5f5", "#666666", "#e0e0e0")
REF_EDGE_COLOR = "#a9b8cc"


def _esc(text: str) -> str:
    return html.escape(text, quote=True)


def _cell(text: str, width: float, height: int, *, port: str | None = None, bold: bool = False,
          italic: bool = False, bgcolor: str | None = None, align: str = "LEFT") -> str:
    attrs = f'FIXEDSIZE="TRUE" WIDTH="{width:g}" HEIGHT="{height}" ALIGN="{align}"'
    if port:
        attrs += f' PORT="{_esc(port)}"'
    if bgcolor:
        attrs += f' BGCOLOR="{bgcolor}"'
    body = _esc(text)
    if bold:
        body = f"<B>{body}</B>"
    if italic:
        body = f"<I>{body}</I>"
    return f"<TR><TD {attrs}>{body}</TD></TR>"


def _node(table: Table) -> str:
    keys = {c.name: " ".join(_markers(table, c)) for c in table.columns}
    types = {c.name: short_type(c.type) for c in table.columns}
    w_key = max(len(k) for k in keys.values())
    w_name = max(len(c.name) for c in table.columns)
    w_type = max(len(t) for t in types.values())
    rows = []
    for c in table.columns:
        text = f"{c.name:<{w_name}}  {types[c.name]:<{w_type}}  {'NOT NULL' if c.not_null else 'null'}"
        rows.append((c.name, f"{keys[c.name]:<{w_key}}  {text}" if w_key else text))
    title = table.qualified
    notes = [f"partitioned by {table.partition_key}"] if table.partition_key else []
    notes += [f"UK ({', '.join(key)})" for key in table.unique_keys if len(key) > 1]
    if table.schema in VAULT_SCHEMAS:
        notes.append("RESTRICTED: vault")
    chars = max([len(text) for _, text in rows] + [len(title) + 2] + [len(n) for n in notes])
    width = round(chars * CHAR_W + 2 * PAD)
    _, _, header = SCHEMA_STYLE.get(table.schema, DEFAULT_STYLE)
    cells = [_cell(title, width, HEAD_H, bold=True, bgcolor=header, align="CENTER")]
    cells += [_cell(n, width, ROW_H, italic=True, bgcolor=header, align="CENTER") for n in notes]
    cells += [_cell(text, width, ROW_H, port=name) for name, text in rows]
    label = ('<TABLE BORDER="1" CELLBORDER="0" CELLSPACING="0" CELLPADDING="2" BGCOLOR="white">'
             + "".join(cells) + "</TABLE>")
    return f"{entity_id(table)} [label=<{label}>];"


def _dot_arrow(optional: bool, many: bool) -> str:
    """Crow's foot at one end of an edge: the first shape is nearest the table."""
    return ("crow" if many else "tee") + ("odot" if optional else "tee")


def render_dot(tables: list[Table]) -> str:
    """The Graphviz source: one cluster per schema, one fixed-size HTML table per entity, crow's-foot
    edges from the referenced key to the referencing columns."""
    out = ["digraph erd {",
           f'  graph [rankdir=LR, fontname="{FONT}", fontsize={FONT_SIZE}, nodesep=0.25, ranksep=1.1, '
           'pad=0.3, bgcolor="white", newrank=true];',
           f'  node [shape=plain, fontname="{FONT}", fontsize={FONT_SIZE}];',
           '  edge [dir=both, arrowsize=0.9, penwidth=1.1];']
    schemas = list(dict.fromkeys(t.schema for t in tables))
    for schema in schemas:
        fill, border, _ = SCHEMA_STYLE.get(schema, DEFAULT_STYLE)
        title = SCHEMA_TITLES.get(schema, schema)
        label = (f'<TABLE BORDER="0" CELLPADDING="0" CELLSPACING="0"><TR><TD FIXEDSIZE="TRUE" '
                 f'WIDTH="{round(len(title) * CHAR_W * 1.1)}" HEIGHT="{HEAD_H}"><B>{_esc(title)}</B></TD></TR>'
                 "</TABLE>")
        style = "filled,dashed" if schema in VAULT_SCHEMAS else "filled,rounded"
        width = 2.5 if schema in VAULT_SCHEMAS else 1.2
        out += [f"  subgraph cluster_{schema} {{",
                f'    label=<{label}>; labeljust=l; style="{style}"; fillcolor="{fill}"; color="{border}"; '
                f"penwidth={width};"]
        out += [f"    {_node(t)}" for t in tables if t.schema == schema]
        out.append("  }")
    for rel in relationships(tables):
        # Lookups into reference data are drawn light: they are many and say little about the flow.
        color = REF_EDGE_COLOR if rel.parent.schema == "ref" else SCHEMA_STYLE.get(rel.child.schema, DEFAULT_STYLE)[1]
        tail = f"{entity_id(rel.parent)}:{rel.fk.ref_columns[0]}"
        head = f"{entity_id(rel.child)}:{rel.fk.columns[0]}"
        attrs = (f'arrowtail={_dot_arrow(rel.parent_optional, False)}, '
                 f'arrowhead={_dot_arrow(True, not rel.child_at_most_one)}, color="{color}"')
        if not rel.identifying:
            attrs += ", style=dashed"
        out.append(f'  {tail} -> {head} [{attrs}, tooltip="{_esc(rel.child.qualified)}.{_esc(rel.fk.name)}"];')
    out.append("}")
    return "\n".join(out) + "\n"


def _dot_exe(dot: str) -> str:
    exe = shutil.which(dot)
    if exe is None:
        raise ErdError("Graphviz `dot` is not installed: run `make setup` (or `apt-get install graphviz`)")
    return exe


def dot_version(dot: str = "dot") -> str:
    """`dot -V` as e.g. "2.43.0 (0)"."""
    proc = subprocess.run([_dot_exe(dot), "-V"], capture_output=True, text=True, check=True)
    m = re.search(r"version\s+(.+?)\s*$", proc.stderr.strip() or proc.stdout.strip())
    return m.group(1) if m else "unknown"


def dot_digest(dot_source: str) -> str:
    return hashlib.sha256(dot_source.encode()).hexdigest()


def _core_plugins_env(exe: str, plugin_dir: Path) -> dict[str, str]:
    """An environment in which `dot` loads only its core renderers and the dot layout: without the
    pango plugin, text is measured with graphviz's built-in font metrics instead of the fonts this
    machine happens to have, so the SVG is the same on every machine with the same graphviz."""
    probe = subprocess.run([exe, "-v", "-Tsvg"], input="digraph{}", capture_output=True, text=True)
    m = re.search(r'libdir = "([^"]+)"', probe.stderr)
    if probe.returncode != 0 or m is None:
        raise ErdError(f"cannot find graphviz's plugin directory in `dot -v`: {probe.stderr.strip()[:300]}")
    libs = [lib for pattern in ("libgvplugin_core.*", "libgvplugin_dot_layout.*")
            for lib in sorted(Path(m.group(1)).glob(pattern))]
    if not libs:
        raise ErdError(f"graphviz's core and dot-layout plugins are not in {m.group(1)}")
    for lib in libs:
        (plugin_dir / lib.name).symlink_to(lib)
    env = {"PATH": os.environ.get("PATH", ""), "GVBINDIR": str(plugin_dir), "LC_ALL": "C"}
    subprocess.run([exe, "-c"], env=env, capture_output=True, check=True)  # writes the plugin config there
    return env


_GRAPHVIZ_COMMENT = re.compile(r"<!-- Generated by graphviz version[^>]*-->\n")
SVG_STAMP = re.compile(r"<!-- lakehouse docs erd: graphviz (?P<version>.+?), built-in font metrics; "
                       r"dot source sha256 (?P<digest>[0-9a-f]{64}) -->")


def render_svg(dot_source: str, dot: str = "dot") -> str:
    """The SVG of `dot_source`, laid out and rendered by graphviz with its built-in font metrics, with
    graphviz's version comment replaced by a stamp naming the graphviz version and the digest of the
    source. Nothing else in the output varies between runs."""
    exe = _dot_exe(dot)
    version = dot_version(dot)
    with tempfile.TemporaryDirectory(prefix="lakehouse-erd-") as tmp:
        env = _core_plugins_env(exe, Path(tmp))
        proc = subprocess.run([exe, "-Tsvg"], input=dot_source, capture_output=True, text=True, env=env)
    if proc.returncode != 0 or proc.stderr.strip():
        raise ErdError(f"dot failed ({proc.returncode}): {proc.stderr.strip()[:1000]}")
    svg = _GRAPHVIZ_COMMENT.sub("", proc.stdout, count=1)
    stamp = (f"<!-- lakehouse docs erd: graphviz {version}, built-in font metrics; "
             f"dot source sha256 {dot_digest(dot_source)} -->\n")
    head, sep, rest = svg.partition("<svg ")
    if not sep:
        raise ErdError("dot produced no <svg> element")
    lines = [line.rstrip() for line in (head + stamp + sep + rest).splitlines()]
    return "\n".join(lines).rstrip("\n") + "\n"


def svg_stamp(svg: str) -> tuple[str, str] | None:
    """(graphviz version, dot source digest) recorded in an SVG written by `render_svg`."""
    m = SVG_STAMP.search(svg)
    return (m.group("version"), m.group("digest")) if m else None


# --- the documents ---------------------------------------------------------------------------------
def render_erd_md(tables: list[Table]) -> str:
    counts = ", ".join(f"`{s}` {sum(t.schema == s for t in tables)}" for s in dict.fromkeys(t.schema for t in tables))
    return "\n".join([
        "# OLTP entity-relationship diagram",
        "",
        "Generated from the live PostgreSQL schema by `lakehouse docs erd`; do not edit by hand (a test fails",
        "when it differs from the migrated schema). Rendered with Graphviz: [erd.svg](erd.svg). Design notes,",
        "business rules and the justification of every index: [schema.md](schema.md).",
        "",
        f"Tables per schema: {counts}.",
        "A partitioned table appears once, as its parent (its monthly and default partitions are not",
        "entities). Entity `schema_table` is the table `schema.table`.",
        "",
        "- keys: `PK` primary key, `FK` foreign key column, `UK` part of a unique key (a composite one is",
        "  named in the first column's note); primary key columns are NOT NULL, other columns say so.",
        "- cardinality, from the foreign key columns: the referenced side is exactly one (`||`) when every",
        "  FK column is NOT NULL, else zero or one (`|o`); the referencing side is zero or one (`o|`) when the",
        "  FK columns contain a unique key of that table, else zero or more (`o{`).",
        "- a solid line is an identifying relationship (the referencing table's primary key shares a column",
        "  with the foreign key), a dashed one is non-identifying; the label lists the FK columns.",
        "- **the vault**: entities `vault_*` (every column noted `VAULT restricted`; red dashed cluster in the",
        "  SVG) hold card numbers, encrypted; the application may only call `vault.store_pan()`, reads need",
        "  `vault_reader`, and the schema is never part of the CDC publication.",
        "",
        "```mermaid",
        render_mermaid(tables).rstrip("\n"),
        "```",
        "",
    ])


def render_all(tables: list[Table], dot: str = "dot") -> dict[Path, str]:
    """Relative path → content of every ERD document."""
    return {ERD_MD: render_erd_md(tables), ERD_SVG: render_svg(render_dot(tables), dot)}


def write_erd(settings: Any, root: Path | None = None) -> list[Path]:
    """Introspects the database named by `settings` (as the application role) and writes
    docs/oltp/erd.md and docs/oltp/erd.svg under `root` (default: the repository); returns the paths."""
    from lakehouse.common.config import project_root
    from lakehouse.oltp.db import connect

    root = root or project_root()
    with connect(settings, autocommit=True) as conn:
        tables = introspect(conn)
    if not tables:
        raise ErdError(f"no tables in schemas {', '.join(SCHEMAS)} of database "
                       f"{settings.services.postgres.database!r}: run `lakehouse oltp migrate` first")
    written = []
    for rel, content in render_all(tables).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
        written.append(path)
    return written
