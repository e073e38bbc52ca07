"""The one config loader.

`conf/base.yaml` is merged with `conf/<env>.yaml`, then with environment variables named
`LAKEHOUSE__<SECTION>__<KEY>` (values parsed as YAML scalars), then with explicit overrides
(`--set spark.master=local[2]`). The result is validated into a frozen `Settings` object: an unknown
key, a wrong type or a bad value raises `ConfigError` naming the key, at start-up.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ENV_PREFIX = "LAKEHOUSE__"
ENVIRONMENTS = ("local", "test", "cluster")
_SIZE = re.compile(r"^\d+[kmg]b?$", re.IGNORECASE)


class ConfigError(ValueError):
    """A configuration value is missing, unknown or invalid; the message names the key."""


def project_root() -> Path:
    """The repository root (`LAKEHOUSE_HOME` when set, else the directory above the package)."""
    home = os.environ.get("LAKEHOUSE_HOME")
    return Path(home).resolve() if home else Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class PathsConfig:
    state_dir: str
    jar_dir: str
    lakehouse_dir: str = ""
    checkpoint_dir: str = ""


@dataclass(frozen=True)
class SparkConfig:
    master: str
    app_name: str
    driver_memory: str
    shuffle_partitions: int
    ansi: bool
    ui_enabled: bool
    ui_port: int
    log_level: str
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class PostgresConfig:
    port: int
    database: str
    user: str
    password_env: str
    os_user: str
    max_connections: int


@dataclass(frozen=True)
class ReplicaConfig:
    enabled: bool
    port: int


@dataclass(frozen=True)
class KafkaConfig:
    port: int
    controller_port: int
    heap: str
    num_partitions: int
    log_retention_hours: int


@dataclass(frozen=True)
class ConnectConfig:
    port: int
    heap: str
    group_id: str


@dataclass(frozen=True)
class RedisConfig:
    port: int
    maxmemory: str


@dataclass(frozen=True)
class ServicesConfig:
    host: str
    start_timeout_s: int
    postgres: PostgresConfig
    replica: ReplicaConfig
    kafka: KafkaConfig
    connect: ConnectConfig
    redis: RedisConfig


@dataclass(frozen=True)
class CdcConfig:
    connector: str
    topic_prefix: str
    publication: str
    slot: str
    snapshot_mode: str
    heartbeat_ms: int
    partitions: int
    retention_hours: int


@dataclass(frozen=True)
class EventsConfig:
    topic_prefix: str
    partitions: int
    retention_hours: int
    noise: float
    pii_share: float = 0.05


@dataclass(frozen=True)
class BronzeConfig:
    trigger_interval: str
    max_offsets_per_trigger: int
    starting_offsets: str
    fail_on_data_loss: bool = True


@dataclass(frozen=True)
class SilverConfig:
    trigger_interval: str
    max_quarantine_ratio: float
    scd2_tables: tuple[str, ...] = ()
    ge_result_format: str = "BOOLEAN_ONLY"


@dataclass(frozen=True)
class GoldConfig:
    refresh_interval: str = "60 seconds"


@dataclass(frozen=True)
class FeaturesConfig:
    project: str = "payments_lakehouse"
    registry_database: str = "feast_registry"
    stream_trigger_interval: str = "2 seconds"
    skew_sample: int = 200
    skew_tolerance: float = 1e-6


@dataclass(frozen=True)
class MlConfig:
    tracking_database: str = "mlflow"
    artifact_dir: str = ""
    experiment: str = "fraud"
    model_name: str = "fraud_classifier"
    label_delay_days: int = 30
    validation_days: int = 14
    test_days: int = 14
    promote_metric: str = "average_precision"
    promote_margin: float = 0.005
    cost_missed_fraud: float = 100.0
    cost_false_decline: float = 5.0
    serve_port: int = 18091
    psi_threshold: float = 0.2
    performance_drop: float = 0.1
    seed: int = 42


@dataclass(frozen=True)
class SecurityConfig:
    master_key_env: str


@dataclass(frozen=True)
class Settings:
    """Validated, immutable configuration of one environment."""

    env: str
    paths: PathsConfig
    spark: SparkConfig
    cdc: CdcConfig
    events: EventsConfig
    bronze: BronzeConfig
    silver: SilverConfig
    gold: GoldConfig
    security: SecurityConfig
    features: FeaturesConfig
    ml: MlConfig
    services: ServicesConfig

    # Derived locations: absolute, so that any process (or executor) resolves the same place.
    @property
    def state_dir(self) -> Path:
        return _absolute(self.paths.state_dir)

    @property
    def jar_dir(self) -> Path:
        return _absolute(self.paths.jar_dir)

    @property
    def lakehouse_dir(self) -> str:
        """Root of the Delta tables: a local path or a URI (s3a://, hdfs://, abfss://)."""
        if self.paths.lakehouse_dir:
            return _uri_or_absolute(self.paths.lakehouse_dir)
        return str(self.state_dir / "lakehouse")

    @property
    def mlflow_artifact_dir(self) -> str:
        """Root of MLflow's artifacts: `ml.artifact_dir`, else <state_dir>/mlflow/artifacts."""
        if self.ml.artifact_dir:
            return _uri_or_absolute(self.ml.artifact_dir)
        return str(self.state_dir / "mlflow" / "artifacts")

    @property
    def checkpoint_dir(self) -> str:
        if self.paths.checkpoint_dir:
            return _uri_or_absolute(self.paths.checkpoint_dir)
        return f"{self.lakehouse_dir.rstrip('/')}/_checkpoints"

    def service_ports(self) -> dict[str, int]:
        """Every port the local stack binds, keyed by its config key."""
        s = self.services
        return {
            "services.postgres.port": s.postgres.port,
            "services.replica.port": s.replica.port,
            "services.kafka.port": s.kafka.port,
            "services.kafka.controller_port": s.kafka.controller_port,
            "services.connect.port": s.connect.port,
            "services.redis.port": s.redis.port,
        }


def as_dict(value: Any) -> Any:
    """Settings (or a part of them) as plain dicts, for printing."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: as_dict(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {k: as_dict(v) for k, v in value.items()}
    return value


def _absolute(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else (project_root() / p).resolve()


def _uri_or_absolute(path: str) -> str:
    return path if "://" in path else str(_absolute(path))


def load_settings(env: str | None = None, overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None, conf_dir: Path | None = None) -> Settings:
    """Loads and validates the settings of `env` (default: `LAKEHOUSE_ENV`, else `local`).

    `overrides` maps dotted keys to values (`{"spark.master": "local[2]"}`) and wins over
    everything; `environ` defaults to `os.environ`.
    """
    environ = os.environ if environ is None else environ
    env = env or environ.get("LAKEHOUSE_ENV", "local")
    if env not in ENVIRONMENTS:
        raise ConfigError(f"env: unknown environment {env!r}; expected one of {', '.join(ENVIRONMENTS)}")
    conf_dir = conf_dir or project_root() / "conf"
    merged = _read_yaml(conf_dir / "base.yaml")
    _deep_merge(merged, _read_yaml(conf_dir / f"{env}.yaml"), origin=f"conf/{env}.yaml")
    for name, raw in sorted(environ.items()):
        if name.startswith(ENV_PREFIX):
            dotted = ".".join(part.lower() for part in name[len(ENV_PREFIX):].split("__"))
            _set_dotted(merged, dotted, _parse_scalar(raw), origin=f"environment variable {name}")
    for dotted, value in (overrides or {}).items():
        _set_dotted(merged, dotted, _parse_scalar(value) if isinstance(value, str) else value,
                    origin="override")
    merged["env"] = env
    settings = _build(Settings, merged, "")
    _validate(settings)
    return settings


def parse_overrides(pairs: list[str] | None) -> dict[str, str]:
    """`["spark.master=local[2]"]` -> `{"spark.master": "local[2]"}` (for `--set` options)."""
    result: dict[str, str] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {pair!r}: expected key=value, e.g. spark.master=local[2]")
        result[key.strip()] = value
    return result


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping")
    return data


def _parse_scalar(raw: str) -> Any:
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, (dict, list)) or (value is None and raw.strip()) else value


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any], origin: str, prefix: str = "") -> None:
    for key, value in extra.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and isinstance(base.get(key), dict) and key != "extra":
            _deep_merge(base[key], value, origin, f"{dotted}.")
        elif isinstance(value, Mapping) and isinstance(base.get(key), dict):
            base[key] = {**base[key], **value}
        else:
            base[key] = value


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any, origin: str) -> None:
    parts = dotted.split(".")
    node = tree
    for i, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None and parts[i] == "extra":
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: unknown key (from {origin})")
        node = child
        if part == "extra":  # spark.extra.<spark key with dots>
            node[".".join(parts[i + 1:])] = value
            return
    node[parts[-1]] = value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{prefix}{unknown[0]}: unknown key (known: {', '.join(sorted(fields))})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in data:
            if f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING:
                continue
            raise ConfigError(f"{key}: missing")
        values[name] = _coerce(hints[name], data[name], key)
    return cls(**values)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _build(tp, value, f"{key}.")
    origin = typing.get_origin(tp)
    if origin in (Mapping, dict) or tp is Mapping:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return types.MappingProxyType({str(k): str(v) for k, v in value.items()})
    if origin is tuple:   # tuple[str, ...]: a YAML list of strings (an env override: comma-separated)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key}: expected a list of strings, got {value!r}")
        return tuple(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    raise ConfigError(f"{key}: unsupported type {tp}")  # pragma: no cover - a bug in this module


def _validate(s: Settings) -> None:
    ports = s.service_ports()
    for key, port in ports.items():
        if not 1024 <= port <= 65535:
            raise ConfigError(f"{key}: port {port} must be between 1024 and 65535")
    seen: dict[int, str] = {}
    for key, port in ports.items():
        if port in seen:
            raise ConfigError(f"{key}: port {port} is also used by {seen[port]}")
        seen[port] = key
    if s.spark.shuffle_partitions < 1:
        raise ConfigError(f"spark.shuffle_partitions: must be >= 1, got {s.spark.shuffle_partitions}")
    if s.spark.master and not re.match(r"^(local(\[(\*|\d+)(,\d+)?\])?|local-cluster\[\d+,\d+,\d+\]|"
                                       r"spark://.+|yarn|k8s://.+|mesos://.+)$", s.spark.master):
        raise ConfigError(f"spark.master: {s.spark.master!r} is not a Spark master URL")
    for key, size in (("spark.driver_memory", s.spark.driver_memory), ("services.kafka.heap", s.services.kafka.heap),
                      ("services.connect.heap", s.services.connect.heap),
                      ("services.redis.maxmemory", s.services.redis.maxmemory)):
        if size and not _SIZE.match(size):
            raise ConfigError(f"{key}: {size!r} is not a size like 512m or 2g")
    if s.spark.log_level.upper() not in {"ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF", "TRACE"}:
        raise ConfigError(f"spark.log_level: {s.spark.log_level!r} is not a log4j level")
    if s.env == "cluster" and not s.paths.lakehouse_dir:
        raise ConfigError("paths.lakehouse_dir: must be set for env 'cluster' (storage every executor reaches, "
                          "e.g. s3a://bucket/lakehouse); set LAKEHOUSE__PATHS__LAKEHOUSE_DIR")
    for key, share in (("events.noise", s.events.noise), ("events.pii_share", s.events.pii_share)):
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"{key}: must be between 0 and 1, got {share}")
    if s.cdc.snapshot_mode not in ("initial", "never", "when_needed", "no_data", "initial_only", "always"):
        raise ConfigError(f"cdc.snapshot_mode: {s.cdc.snapshot_mode!r} is not a Debezium snapshot mode")
    if s.bronze.starting_offsets not in ("earliest", "latest"):
        raise ConfigError(f"bronze.starting_offsets: must be earliest or latest, got {s.bronze.starting_offsets!r}")
    if s.bronze.max_offsets_per_trigger < 0:
        raise ConfigError(f"bronze.max_offsets_per_trigger: must be >= 0 (0: no limit), "
                          f"got {s.bronze.max_offsets_per_trigger}")
    for key, interval in (("bronze.trigger_interval", s.bronze.trigger_interval),
                          ("silver.trigger_interval", s.silver.trigger_interval),
                          ("gold.refresh_interval", s.gold.refresh_interval)):
        if not re.match(r"^\d+ (milliseconds?|seconds?|minutes?|hours?)$", interval):
            raise ConfigError(f"{key}: {interval!r} is not an interval like '5 seconds' or '500 milliseconds'")
    if not 0.0 <= s.silver.max_quarantine_ratio <= 1.0:
        raise ConfigError(f"silver.max_quarantine_ratio: must be between 0 and 1, got {s.silver.max_quarantine_ratio}")
    if s.silver.ge_result_format not in ("BASIC", "BOOLEAN_ONLY"):
        raise ConfigError(f"silver.ge_result_format: must be BASIC or BOOLEAN_ONLY, got {s.silver.ge_result_format!r}")
    for name in s.silver.scd2_tables:
        if not re.match(r"^[a-z_]+\.[a-z_]+$", name):
            raise ConfigError(f"silver.scd2_tables: {name!r} is not a <schema>.<table> name of the OLTP database")
    if not s.security.master_key_env:
        raise ConfigError("security.master_key_env: must name the environment variable holding the master key")
    for key, n in (("cdc.partitions", s.cdc.partitions), ("events.partitions", s.events.partitions)):
        if n < 1:
            raise ConfigError(f"{key}: must be >= 1, got {n}")
    if not re.match(r"^[A-Za-z0-9_]+$", s.features.project):
        raise ConfigError(f"features.project: {s.features.project!r} must be letters, digits and underscores")
    for key, db in (("features.registry_database", s.features.registry_database),
                    ("ml.tracking_database", s.ml.tracking_database)):
        if not re.match(r"^[a-z_][a-z0-9_]*$", db):
            raise ConfigError(f"{key}: {db!r} is not a PostgreSQL database name (lower case, digits, _)")
    if not re.match(r"^\d+ (milliseconds?|seconds?|minutes?|hours?)$", s.features.stream_trigger_interval):
        raise ConfigError(f"features.stream_trigger_interval: {s.features.stream_trigger_interval!r} is not an "
                          "interval like '2 seconds'")
    for key, days, low in (("ml.label_delay_days", s.ml.label_delay_days, 0),
                           ("ml.validation_days", s.ml.validation_days, 1), ("ml.test_days", s.ml.test_days, 1)):
        if days < low:
            raise ConfigError(f"{key}: must be >= {low}, got {days}")
    if s.ml.promote_metric not in ("average_precision", "roc_auc", "expected_cost"):
        raise ConfigError(f"ml.promote_metric: must be average_precision, roc_auc or expected_cost, "
                          f"got {s.ml.promote_metric!r}")
    for key, cost in (("ml.cost_missed_fraud", s.ml.cost_missed_fraud),
                      ("ml.cost_false_decline", s.ml.cost_false_decline)):
        if cost <= 0:
            raise ConfigError(f"{key}: must be > 0, got {cost}")
    if not 1024 <= s.ml.serve_port <= 65535:
        raise ConfigError(f"ml.serve_port: port {s.ml.serve_port} must be between 1024 and 65535")
    if s.ml.serve_port in seen:
        raise ConfigError(f"ml.serve_port: port {s.ml.serve_port} is also used by {seen[s.ml.serve_port]}")
    if s.services.start_timeout_s < 1:
        raise ConfigError("services.start_timeout_s: must be >= 1")
