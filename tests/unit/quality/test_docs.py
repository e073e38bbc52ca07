"""docs/quality.md carries the suites as the registry defines them."""

from lakehouse.common.config import project_root
from lakehouse.quality.docs import BEGIN, END, QUALITY_MD, render_quality_md, render_suites


def test_committed_quality_doc_matches_the_suite_registry() -> None:
    committed = (project_root() / QUALITY_MD).read_text()
    assert committed == render_quality_md(committed), \
        "docs/quality.md is stale: run `python -c 'from lakehouse.quality.docs import write_quality_md; " \
        "write_quality_md()'` and commit it"


def test_the_suites_block_names_every_table_and_severity() -> None:
    text = render_suites()
    assert text.startswith("25 suites, 192 expectations.")
    assert "### `silver.charges`" in text and "### `silver.ref_currencies`" in text
    assert ("| `expect_column_values_to_be_in_set(status)` | `expect_column_values_to_be_in_set` | "
            "`value_set={authorized, canceled, captured, failed, pending}` | error |") in text
    assert "| `expect_reference_to_exist(merchant_id) -> merchants(merchant_id)` |" in text


def test_prose_around_the_block_is_kept() -> None:
    rendered = render_quality_md(f"intro\n{BEGIN}\nold\n{END}\noutro\n")
    assert rendered == f"intro\n{BEGIN}\n{render_suites()}\n{END}\noutro\n"
