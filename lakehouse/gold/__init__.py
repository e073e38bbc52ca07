"""Gold: star schema facts and dimensions, incremental aggregates (issue 6)."""
