"""Table maintenance (`lakehouse maintain`): OPTIMIZE, then VACUUM, for the Delta tables of chosen layers.

- The tables are the ones on storage, as `attach_catalog` finds them (registered or not: silver's CDC
  tables are created from the live OLTP schema and are not in the registry).
- A registered table first gets the properties its spec declares and it lacks (ALTER TABLE SET
  TBLPROPERTIES): a table created before a property was declared (e.g. gold's deletion vectors) is
  brought up to its spec; nothing is ever unset.
- OPTIMIZE is `DeltaTable.optimize().executeCompaction()`. On a liquid-clustered table (by their specs,
  gold's facts and daily aggregates) Delta 4.4 clusters by the table's clustering columns in that same call, exactly
  as SQL `OPTIMIZE` does (the commit records `clusterBy`); on the others it bin-packs small files.
  Both commit with `dataChange = false`, so streams reading the table skip the rewrite.
- VACUUM keeps every file that a reader, a lagging stream or time travel may still need for at least
  `MIN_RETAIN_HOURS` (Delta's safe default, 7 days); shorter is refused here, and Delta's own check
  (`spark.databricks.delta.retentionDurationCheck.enabled`) stays on.

Two session settings are changed for the duration of a run, then restored (`_vacuum_conf`): Delta 4.4
ignores a `RETAIN n HOURS` other than 0 by default (`spark.databricks.delta.vacuum.retentionWindowIgnore.enabled`)
and applies the table's `delta.deletedFileRetentionDuration` instead, so a longer `--retain-hours` would be
dropped without a word; and VACUUM lists a table's directory with
`spark.sql.sources.parallelPartitionDiscovery.parallelism` tasks (10,000 by default: minutes per table on
two cores), set here to `spark.shuffle_partitions`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from delta.tables import DeltaTable
from pyspark.sql import SparkSession

from lakehouse.common.config import Settings
from lakehouse.common.tables import LAYERS, attach_catalog, delta_version, registered, table_path

log = logging.getLogger(__name__)

MIN_RETAIN_HOURS = 168                      # Delta's default delta.deletedFileRetentionDuration (7 days)
LAYER_CHOICES = (*LAYERS, "all")


class MaintainError(ValueError):
    """A request `maintain` refuses (retention too short, unknown table); names what to change."""


def validate_retention(hours: int) -> int:
    """`hours` when it keeps deleted files at least MIN_RETAIN_HOURS; a MaintainError otherwise."""
    if hours < MIN_RETAIN_HOURS:
        raise MaintainError(
            f"--retain-hours {hours} is below {MIN_RETAIN_HOURS} hours (7 days), Delta's safe retention: VACUUM "
            "could delete files that a running query, a lagging stream or time travel still reads. maintain "
            f"refuses it; use --retain-hours {MIN_RETAIN_HOURS} or more")
    return hours


def layers_for(choice: str) -> tuple[str, ...]:
    """The layers of a `--layer` choice (`all`: every layer)."""
    if choice == "all":
        return LAYERS
    if choice not in LAYERS:
        raise MaintainError(f"--layer {choice!r}: expected one of {', '.join(LAYER_CHOICES)}")
    return (choice,)


def select_tables(available: Sequence[str], layers: Sequence[str], names: Sequence[str] = ()) -> list[str]:
    """The tables to maintain, sorted: those of `available` (`layer.name`) in `layers`, or only `names`
    among them when given. A name is `layer.name` or a bare `name` that exactly one chosen layer has;
    an unknown, ambiguous or out-of-layer name is a MaintainError."""
    in_layers = sorted(n for n in set(available) if n.partition(".")[0] in layers)
    if not names:
        return in_layers
    chosen: set[str] = set()
    for name in names:
        if "." in name:
            if name.partition(".")[0] not in layers:
                raise MaintainError(f"--table {name}: not in the chosen layers ({', '.join(layers)}); "
                                    "add --layer all or the table's layer")
            matches = [name] if name in in_layers else []
        else:
            matches = [n for n in in_layers if n.partition(".")[2] == name]
        if not matches:
            raise MaintainError(f"--table {name}: no Delta table of that name in {', '.join(layers)} on storage")
        if len(matches) > 1:
            raise MaintainError(f"--table {name} is ambiguous: {', '.join(matches)}; name the layer too")
        chosen.add(matches[0])
    return sorted(chosen)


@dataclass
class TableResult:
    """What maintenance did to one table. `vacuumed_files` is None when VACUUM did not record its count
    (Delta logs VACUUM in the table's history only on storage that supports it, not on plain S3)."""

    table: str
    files_before: int = 0
    files_after: int = 0
    optimize_removed: int = 0
    optimize_added: int = 0
    clustered_by: list[str] = field(default_factory=list)
    properties_set: dict[str, str] = field(default_factory=dict)
    vacuumed_files: int | None = 0
    would_vacuum: list[str] = field(default_factory=list)       # the dry run's list
    seconds: float = 0.0
    error: str | None = None


@dataclass
class MaintainReport:
    """Every table's result and the totals of a `maintain` run."""

    layers: tuple[str, ...]
    retain_hours: int
    dry_run: bool
    tables: list[TableResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return all(t.error is None for t in self.tables)

    def totals(self) -> dict[str, Any]:
        done = [t for t in self.tables if t.error is None]
        vacuumed = [t.vacuumed_files for t in done]
        return {"tables": len(self.tables), "failed": len(self.tables) - len(done),
                "files_before": sum(t.files_before for t in done), "files_after": sum(t.files_after for t in done),
                "optimize_removed": sum(t.optimize_removed for t in done),
                "optimize_added": sum(t.optimize_added for t in done),
                "vacuumed_files": None if None in vacuumed else sum(v or 0 for v in vacuumed),
                "would_vacuum": sum(len(t.would_vacuum) for t in done)}

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "layers": list(self.layers), "retain_hours": self.retain_hours,
                "dry_run": self.dry_run, "seconds": round(self.seconds, 1), "totals": self.totals(),
                "tables": [{**asdict(t), "seconds": round(t.seconds, 1)} for t in self.tables]}

    def summary(self) -> str:
        """One line: what the run did in total."""
        s = self.totals()
        head = (f"{'dry run: ' if self.dry_run else ''}{s['tables']} table(s) of {', '.join(self.layers)} in "
                f"{self.seconds:.1f}s")
        if self.dry_run:
            body = (f"{s['files_before']} files, no OPTIMIZE; VACUUM (retain {self.retain_hours} h) would delete "
                    f"{s['would_vacuum']} files")
        else:
            vacuumed = "an unrecorded number of" if s["vacuumed_files"] is None else s["vacuumed_files"]
            body = (f"files {s['files_before']} -> {s['files_after']} (OPTIMIZE removed {s['optimize_removed']}, "
                    f"added {s['optimize_added']}); VACUUM (retain {self.retain_hours} h) deleted {vacuumed} files")
        failed = [t.table for t in self.tables if t.error is not None]
        return f"{head}: {body}; {len(failed)} failed" + (f": {', '.join(failed)}" if failed else "")


def _vacuum_conf(settings: Settings) -> dict[str, str]:
    return {"spark.databricks.delta.vacuum.retentionWindowIgnore.enabled": "false",
            "spark.sql.sources.parallelPartitionDiscovery.parallelism": str(settings.spark.shuffle_partitions)}


@contextmanager
def _session_conf(spark: SparkSession, conf: Mapping[str, str]) -> Iterator[None]:
    """`conf` set on the session for the block, the previous values restored afterwards."""
    saved = {k: spark.conf.get(k, None) for k in conf}
    for k, v in conf.items():
        spark.conf.set(k, v)
    try:
        yield
    finally:
        for k, old in saved.items():
            if old is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, old)


def _detail(spark: SparkSession, path: str) -> tuple[int, list[str], dict[str, str]]:
    """The table's live file count, clustering columns and properties."""
    row = spark.sql(f"DESCRIBE DETAIL delta.`{path}`").select("numFiles", "clusteringColumns", "properties").first()
    assert row is not None  # DESCRIBE DETAIL always returns one row
    return int(row["numFiles"] or 0), list(row["clusteringColumns"] or []), dict(row["properties"] or {})


def missing_properties(declared: Mapping[str, str], actual: Mapping[str, str]) -> dict[str, str]:
    """The declared properties the table lacks or holds with another value."""
    return {k: v for k, v in sorted(declared.items()) if actual.get(k) != v}


def _vacuum(spark: SparkSession, path: str, hours: int) -> int | None:
    """VACUUM; the number of files it deleted, from its VACUUM END commit (None when it wrote none)."""
    table = DeltaTable.forPath(spark, path)
    since = delta_version(spark, path)
    table.vacuum(float(hours))
    now = delta_version(spark, path)
    if since is None or now is None or now == since:
        return None
    ends = (table.history(now - since).where(f"version > {since} AND operation = 'VACUUM END'")
            .orderBy("version", ascending=False).select("operationMetrics").first())
    if ends is None:
        return None
    return int((ends["operationMetrics"] or {}).get("numDeletedFiles", 0))


def maintain_table(spark: SparkSession, path: str, name: str, retain_hours: int, dry_run: bool,
                   declared: Mapping[str, str] | None = None) -> TableResult:
    """The `declared` properties the table lacks set, then OPTIMIZE, then VACUUM (with `dry_run`: the
    properties listed, not set, and VACUUM DRY RUN only); a failure is recorded in the result's `error`,
    not raised, so that one busy table does not stop the others."""
    result = TableResult(name)
    started = time.monotonic()
    try:
        result.files_before, result.clustered_by, properties = _detail(spark, path)
        result.properties_set = missing_properties(declared or {}, properties)
        if result.properties_set and not dry_run:
            pairs = ", ".join(f"'{k}' = '{v}'" for k, v in result.properties_set.items())
            spark.sql(f"ALTER TABLE delta.`{path}` SET TBLPROPERTIES ({pairs})")
        if dry_run:
            result.files_after = result.files_before
            listed = spark.sql(f"VACUUM delta.`{path}` RETAIN {retain_hours} HOURS DRY RUN").collect()
            result.would_vacuum = sorted(r["path"] for r in listed)
            result.vacuumed_files = 0
        else:
            metrics = DeltaTable.forPath(spark, path).optimize().executeCompaction().first()
            m = metrics["metrics"] if metrics is not None else None
            result.optimize_removed = int(m["numFilesRemoved"]) if m is not None else 0
            result.optimize_added = int(m["numFilesAdded"]) if m is not None else 0
            result.files_after = _detail(spark, path)[0]
            result.vacuumed_files = _vacuum(spark, path, retain_hours)
    except Exception as e:  # reported per table; the run goes on and exits non-zero
        result.error = f"{type(e).__name__}: {' '.join(str(e).split())[:400]}"
        log.warning("maintain %s failed", name, exc_info=True)
    result.seconds = time.monotonic() - started
    return result


def describe(result: TableResult, retain_hours: int, dry_run: bool) -> str:
    """The progress line of one table."""
    if result.error is not None:
        return f"{result.table}: FAILED after {result.seconds:.1f}s: {result.error}"
    layout = f"clustered by {', '.join(result.clustered_by)}" if result.clustered_by else "compacted"
    props = "".join(f"; {'would set' if dry_run else 'set'} {k}={v}" for k, v in result.properties_set.items())
    if dry_run:
        return (f"{result.table}: {result.files_before} files{props}; VACUUM DRY RUN (retain {retain_hours} h): "
                f"{len(result.would_vacuum)} files would be deleted ({result.seconds:.1f}s)")
    vacuumed = "? (not recorded)" if result.vacuumed_files is None else result.vacuumed_files
    return (f"{result.table}: OPTIMIZE {result.files_before} -> {result.files_after} files (removed "
            f"{result.optimize_removed}, added {result.optimize_added}; {layout}); VACUUM (retain {retain_hours} h) "
            f"deleted {vacuumed} files{props} ({result.seconds:.1f}s)")


def maintain(spark: SparkSession, settings: Settings, layers: Sequence[str], names: Sequence[str] = (),
             retain_hours: int = MIN_RETAIN_HOURS, dry_run: bool = False,
             progress: Callable[[str], None] = log.info) -> MaintainReport:
    """OPTIMIZE + VACUUM (or, with `dry_run`, VACUUM DRY RUN only) of every Delta table of `layers` on
    storage (or only `names`), one table at a time; `progress` gets a line per table."""
    retain_hours = validate_retention(retain_hours)
    tables = select_tables(attach_catalog(spark, settings), layers, names)
    report = MaintainReport(tuple(layers), retain_hours, dry_run)
    started = time.monotonic()
    with _session_conf(spark, _vacuum_conf(settings)):
        for name in tables:
            declared = {s.full_name: s.properties for s in registered()}.get(name)
            result = maintain_table(spark, table_path(settings, name), name, retain_hours, dry_run, declared)
            report.tables.append(result)
            progress(describe(result, retain_hours, dry_run))
    report.seconds = time.monotonic() - started
    return report
