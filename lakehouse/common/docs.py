"""Documentation generated from the code, so that it cannot drift (a test compares the committed files)."""

from __future__ import annotations

from pathlib import Path

from lakehouse.common.config import project_root
from lakehouse.common.tables import registered

TABLES_MD = Path("docs") / "tables.md"


def render_tables_md() -> str:
    """`docs/tables.md`: every registered table with its schema, partitioning and properties."""
    out = ["# Lakehouse tables", "",
           "Generated from the table registry by `lakehouse docs`; do not edit by hand.", ""]
    for spec in registered():
        out += [f"## `{spec.full_name}`", "", spec.comment, ""]
        out.append(f"- partitioned by: {', '.join(f'`{c}`' for c in spec.partition_by) or 'none'}")
        if spec.cluster_by:
            out.append(f"- clustered by: {', '.join(f'`{c}`' for c in spec.cluster_by)}")
        props = ", ".join(f"`{k}={v}`" for k, v in sorted(spec.properties.items()))
        out += [f"- properties: {props or 'none'}", "", "| column | type | nullable |", "|---|---|---|"]
        out += [f"| `{f.name}` | `{f.dataType.simpleString()}` | {'yes' if f.nullable else 'no'} |"
                for f in spec.schema.fields]
        out.append("")
    return "\n".join(out)


def write_docs(root: Path | None = None) -> list[Path]:
    """Regenerates every generated document; returns the paths written."""
    from lakehouse.gold.docs import write_star_schema_md
    from lakehouse.quality.docs import write_quality_md
    from lakehouse.security.classification import write_classification_doc

    root = root or project_root()
    path = root / TABLES_MD
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_tables_md())
    return [path, write_classification_doc(root), write_quality_md(root), write_star_schema_md(root)]
