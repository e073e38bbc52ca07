from __future__ import annotations

import pytest

from lakehouse.bronze.ingest import checkpoint_location, commit_marker, kafka_source_options, marked_batch
from lakehouse.common.config import ConfigError, load_settings


def test_source_options_follow_the_bronze_settings() -> None:
    s = load_settings("local", environ={}, overrides={"services.kafka.port": 29092, "paths.lakehouse_dir": "/lh"})
    assert kafka_source_options(s) == {
        "kafka.bootstrap.servers": "127.0.0.1:29092",
        "subscribePattern": r"^(?:cdc\.[^.]+\.[^.]+|events\.[^.]+)$",
        "startingOffsets": "earliest",
        "failOnDataLoss": "true",
    }
    assert checkpoint_location(s) == "/lh/_checkpoints/bronze"
    capped = load_settings("local", environ={}, overrides={
        "bronze.max_offsets_per_trigger": 50000, "bronze.fail_on_data_loss": False, "cdc.topic_prefix": "pg"})
    options = kafka_source_options(capped)
    assert (options["maxOffsetsPerTrigger"], options["failOnDataLoss"]) == ("50000", "false")
    assert options["subscribePattern"] == r"^(?:pg\.[^.]+\.[^.]+|events\.[^.]+)$"


@pytest.mark.parametrize(("key", "value", "message"), [
    ("bronze.trigger_interval", "5s", "bronze.trigger_interval: '5s' is not an interval like '5 seconds'"),
    ("bronze.max_offsets_per_trigger", "-1", "bronze.max_offsets_per_trigger: must be >= 0"),
    ("bronze.fail_on_data_loss", "maybe", "bronze.fail_on_data_loss: expected true or false"),
])
def test_bad_bronze_settings_fail_fast_naming_the_key(key: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings("local", environ={}, overrides={key: value})


def test_intervals_spark_accepts_are_valid() -> None:
    for interval in ("1 second", "500 milliseconds", "5 seconds", "2 minutes"):
        s = load_settings("local", environ={}, overrides={"bronze.trigger_interval": interval})
        assert s.bronze.trigger_interval == interval


def test_commit_markers_name_their_query_and_batch() -> None:
    app = "lakehouse-bronze-1f0c"
    assert commit_marker(app, 17) == "lakehouse-bronze-1f0c:17"
    assert marked_batch(commit_marker(app, 17)) == 17                      # any bronze query
    assert marked_batch(commit_marker(app, 17), app) == 17                 # this query
    assert marked_batch(commit_marker(app, 17), "lakehouse-bronze-9999") is None
    assert marked_batch(commit_marker(app, 17), "lakehouse-bronze-1f") is None   # a prefix of the id is not the id
    for other in (None, "", "OPTIMIZE", "lakehouse-bronze-1f0c:x", "someone:17"):
        assert marked_batch(other) is None
