"""Integration fixtures shared by modules.

- `gold_lakehouse` (session): its own database (`gold_e2e`) with 45 days of simulated history (refunds,
  disputes, subscriptions over two months, fraud scenarios, app events), captured by Debezium, caught
  up through bronze and silver and built into gold. The queries' tests
  compare gold's answers with answers computed independently in PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from lakehouse.cdc import connector as cdc
from lakehouse.common.config import Settings, load_settings
from tests.integration import helpers

GOLD_DB = "gold_e2e"
GOLD_OVERRIDES = {"services.postgres.database": GOLD_DB, "cdc.connector": "gold-e2e", "cdc.slot": "gold_e2e",
                  "cdc.publication": "gold_e2e", "cdc.topic_prefix": "gold2e", "cdc.heartbeat_ms": "1000",
                  "events.topic_prefix": "gold2eev"}
GOLD_SIM = ["--seed", "21", "--days", "45", "--merchants", "8", "--customers", "200", "--events", "--noise", "0.02"]


@dataclass(frozen=True)
class GoldLakehouse:
    settings: Settings
    sets: list[str]                   # the --set options that point a `lakehouse` process at it
    history: dict[str, Any]           # what `lakehouse simulate` reported
    build: dict[str, Any]             # what `lakehouse run gold --once` reported

    def run(self, *args: str) -> Any:
        # generous: the pipeline steps over 45 days take minutes, more on a loaded machine
        res = helpers.lakehouse(*self.sets, *args, timeout=1800)
        assert res.returncode == 0, helpers.explain(res)
        return res


@pytest.fixture(scope="session")
def gold_lakehouse(stack: Any, settings: Settings, tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[GoldLakehouse]:
    helpers.fresh_database(settings, GOLD_DB)
    lakehouse_dir = tmp_path_factory.mktemp("gold_e2e") / "lakehouse"
    overrides = {**GOLD_OVERRIDES, "paths.lakehouse_dir": str(lakehouse_dir)}
    own = load_settings("test", overrides=overrides)
    sets = [a for k, v in overrides.items() for a in ("--set", f"{k}={v}")]
    lake = GoldLakehouse(own, sets, {}, {})
    end = dt.datetime.now(dt.UTC).date()
    history = json.loads(lake.run("simulate", *GOLD_SIM, "--end", str(end)).stdout)
    try:
        lake.run("cdc", "start", "--wait")
        helpers.wait_for_debezium(own)
        lake.run("run", "bronze", "--once")
        lake.run("run", "silver", "--once")     # silver's reconciliation is test_silver's; gold's is below
        build = helpers.last_json(lake.run("run", "gold", "--once").stdout)
        yield GoldLakehouse(own, sets, history, build)
    finally:
        cdc.stop(own, drop_slot=True, progress=None)


def run_query(spark: Any, name: str, *params: str) -> list[dict[str, Any]]:
    """A query of the pack run in this process, the way `lakehouse query` runs it (load, bind, run)."""
    from lakehouse.gold.querypack import bind, load_query, parse_param_args, run

    query = load_query(name)
    return [r.asDict(recursive=True) for r in run(spark, query, bind(query, parse_param_args(params))).collect()]
