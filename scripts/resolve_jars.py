#!/usr/bin/env python3
"""Resolves the project's JVM dependencies from Maven Central into a local cache, once.

Groups (each a committed pom under jvm/):
  spark     jars added to every Spark session via `spark.jars` (Delta, spark-sql-kafka, JDBC driver);
            jars that the pyspark distribution already ships are dropped, so versions never clash.
  kafka     classpath of the KRaft broker and of the Kafka Connect worker.
  debezium  the Debezium PostgreSQL connector, installed as a Connect plugin under connect-plugins/.

It also writes build/spark-defaults.conf and installs it as pyspark's conf/spark-defaults.conf so
that a plain `spark-submit jobs/<job>.py` loads the cached jars at JVM start, without Ivy.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("spark", "kafka", "debezium")
# Logging is the pyspark distribution's business; never add a second binding to its classpath.
SPARK_DENY = re.compile(r"^(slf4j-|log4j-|commons-logging|jcl-over-slf4j|jul-to-slf4j)")
VERSION_SUFFIX = re.compile(r"-\d[\w.\-]*\.jar$")
MARKER = "# written by payments-lakehouse scripts/resolve_jars.py"


def artifact_name(jar: str) -> str:
    """`jackson-core-2.13.5.jar` -> `jackson-core`."""
    return VERSION_SUFFIX.sub("", jar)


def mvn_copy(pom: Path, out: Path) -> None:
    cmd = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
           f"-DoutputDirectory={out}", "-DincludeScope=runtime"]
    print(f"resolving {pom.relative_to(ROOT)} ...", flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        errors = [ln for ln in res.stdout.splitlines() + res.stderr.splitlines() if "ERROR" in ln]
        sys.exit(f"error: Maven could not resolve {pom}:\n" + "\n".join(errors[:5]))


def pyspark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "jars"))
    out = Path(ap.parse_args().out).resolve()
    spark_home = pyspark_home()
    shipped = {artifact_name(j.name) for j in (spark_home / "jars").glob("*.jar")}

    with tempfile.TemporaryDirectory() as tmp:
        staged = {g: Path(tmp) / g for g in GROUPS}
        for group in GROUPS:
            mvn_copy(ROOT / "jvm" / group / "pom.xml", staged[group])
        targets = {
            "spark": out / "spark",
            "kafka": out / "kafka",
            "debezium": out / "connect-plugins" / "debezium-connector-postgres",
        }
        for group, target in targets.items():
            if target.exists():
                shutil.rmtree(target)
            target.mkdir(parents=True)
            for jar in sorted(staged[group].glob("*.jar")):
                name = artifact_name(jar.name)
                if group == "spark" and (name in shipped or SPARK_DENY.match(name)):
                    continue
                shutil.copy2(jar, target / jar.name)
            print(f"  {group}: {len(list(target.glob('*.jar')))} jars in {target}")

    spark_jars = ",".join(str(j) for j in sorted((out / "spark").glob("*.jar")))
    defaults = out.parent / "spark-defaults.conf"
    defaults.write_text(
        f"{MARKER}\n"
        f"spark.jars {spark_jars}\n"
        "spark.sql.extensions io.delta.sql.DeltaSparkSessionExtension\n"
        "spark.sql.catalog.spark_catalog org.apache.spark.sql.delta.catalog.DeltaCatalog\n"
        "spark.sql.session.timeZone UTC\n"
    )
    conf_dir = spark_home / "conf"
    conf_dir.mkdir(exist_ok=True)
    installed = conf_dir / "spark-defaults.conf"
    if installed.exists() and MARKER not in installed.read_text():
        print(f"  kept existing {installed} (not ours); pass --properties-file {defaults} to spark-submit")
    else:
        shutil.copy2(defaults, installed)
        print(f"  spark-submit defaults: {installed}")


if __name__ == "__main__":
    main()
