from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lakehouse.common.config import ConfigError, load_settings, parse_overrides, project_root

CONF = project_root() / "conf"


def write_conf(tmp_path: Path, base_extra: str = "", env_text: str = "") -> Path:
    (tmp_path / "base.yaml").write_text((CONF / "base.yaml").read_text() + base_extra)
    for env in ("local", "test", "cluster"):
        (tmp_path / f"{env}.yaml").write_text(env_text)
    return tmp_path


def test_env_file_is_merged_over_base() -> None:
    s = load_settings("test", environ={})
    assert s.env == "test"
    assert s.spark.master == "local[2]"          # from test.yaml
    assert s.spark.shuffle_partitions == 2       # from test.yaml
    assert s.spark.ansi is True                  # from base.yaml
    assert s.services.kafka.heap == "512m"       # nested key from test.yaml
    assert s.services.kafka.port == 19092        # sibling kept from base.yaml
    assert s.services.postgres.port == 15432


def test_environment_variable_overrides_and_is_typed() -> None:
    s = load_settings("local", environ={"LAKEHOUSE__SPARK__MASTER": "local[3]",
                                        "LAKEHOUSE__SERVICES__REDIS__PORT": "26379",
                                        "LAKEHOUSE__SPARK__UI_ENABLED": "true"})
    assert s.spark.master == "local[3]"
    assert s.services.redis.port == 26379
    assert s.spark.ui_enabled is True


def test_explicit_override_wins_over_environment() -> None:
    s = load_settings("local", overrides=parse_overrides(["spark.master=local[1]", "spark.extra.spark.sql.x=1"]),
                      environ={"LAKEHOUSE__SPARK__MASTER": "local[3]"})
    assert s.spark.master == "local[1]"
    assert dict(s.spark.extra) == {"spark.sql.x": "1"}


def test_relative_paths_resolve_against_project_root() -> None:
    s = load_settings("local", environ={})
    assert s.state_dir == project_root() / ".state"
    assert s.lakehouse_dir == str(project_root() / ".state" / "lakehouse")
    assert s.checkpoint_dir == str(project_root() / ".state" / "lakehouse" / "_checkpoints")
    s3 = load_settings("local", overrides={"paths.lakehouse_dir": "s3a://bucket/lh/"}, environ={})
    assert s3.lakehouse_dir == "s3a://bucket/lh/"
    assert s3.checkpoint_dir == "s3a://bucket/lh/_checkpoints"


def test_settings_are_frozen() -> None:
    s = load_settings("local", environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.spark.master = "yarn"  # type: ignore[misc]
    with pytest.raises(TypeError):
        s.spark.extra["spark.x"] = "1"  # type: ignore[index]


@pytest.mark.parametrize(("environ", "message"), [
    ({"LAKEHOUSE__SPARK__MASTERR": "local"}, "spark.masterr: unknown key"),
    ({"LAKEHOUSE__NOPE__X": "1"}, "nope.x: unknown key"),
    ({"LAKEHOUSE__SERVICES__KAFKA__PORT": "abc"}, "services.kafka.port: expected an integer, got 'abc'"),
    ({"LAKEHOUSE__SERVICES__KAFKA__PORT": "80"}, "services.kafka.port: port 80 must be between 1024 and 65535"),
    ({"LAKEHOUSE__SERVICES__REDIS__PORT": "19092"}, "services.redis.port: port 19092 is also used by "
                                                    "services.kafka.port"),
    ({"LAKEHOUSE__SPARK__ANSI": "maybe"}, "spark.ansi: expected true or false, got 'maybe'"),
    ({"LAKEHOUSE__SPARK__MASTER": "locall[2]"}, "spark.master: 'locall[2]' is not a Spark master URL"),
    ({"LAKEHOUSE__SPARK__DRIVER_MEMORY": "lots"}, "spark.driver_memory: 'lots' is not a size"),
    ({"LAKEHOUSE__SPARK__SHUFFLE_PARTITIONS": "0"}, "spark.shuffle_partitions: must be >= 1"),
])
def test_bad_value_fails_naming_the_key(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings("local", environ=environ)
    assert message in str(err.value)


def test_unknown_key_in_yaml_is_named(tmp_path: Path) -> None:
    conf = write_conf(tmp_path, env_text="services:\n  kafka:\n    prot: 1\n")
    with pytest.raises(ConfigError, match=r"^services\.kafka\.prot: unknown key"):
        load_settings("local", environ={}, conf_dir=conf)


def test_missing_key_is_named(tmp_path: Path) -> None:
    text = (CONF / "base.yaml").read_text().replace("    heap: 768m\n    num_partitions", "    num_partitions")
    (tmp_path / "base.yaml").write_text(text)
    (tmp_path / "local.yaml").write_text("")
    with pytest.raises(ConfigError, match=r"^services\.kafka\.heap: missing$"):
        load_settings("local", environ={}, conf_dir=tmp_path)


def test_cluster_requires_shared_storage() -> None:
    with pytest.raises(ConfigError, match=r"^paths\.lakehouse_dir: must be set for env 'cluster'"):
        load_settings("cluster", environ={})
    s = load_settings("cluster", environ={"LAKEHOUSE__PATHS__LAKEHOUSE_DIR": "hdfs:///lakehouse"})
    assert s.spark.master == ""  # spark-submit's --master is kept
    assert s.lakehouse_dir == "hdfs:///lakehouse"


def test_unknown_environment_and_malformed_override() -> None:
    with pytest.raises(ConfigError, match=r"^env: unknown environment 'prod'"):
        load_settings("prod", environ={})
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_overrides(["spark.master"])


def test_env_defaults_to_lakehouse_env_variable() -> None:
    assert load_settings(environ={"LAKEHOUSE_ENV": "test"}).env == "test"
    assert load_settings(environ={}).env == "local"
