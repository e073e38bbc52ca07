from lakehouse.common.config import project_root
from lakehouse.common.docs import TABLES_MD, render_tables_md


def test_committed_tables_doc_matches_the_registry() -> None:
    committed = (project_root() / TABLES_MD).read_text()
    assert committed == render_tables_md(), "docs/tables.md is stale: run `lakehouse docs` and commit it"


def test_tables_doc_lists_columns_with_exact_types() -> None:
    text = render_tables_md()
    assert "## `ops.selfcheck`" in text
    assert "| `amount` | `decimal(18,2)` | no |" in text
    assert "- partitioned by: `bucket`" in text
    assert "- properties: `delta.appendOnly=true`" in text
