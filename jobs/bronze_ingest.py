"""Kafka -> bronze Delta: every CDC and event topic into its append-only bronze table, exactly once.

    spark-submit jobs/bronze_ingest.py --env local [--once]
    lakehouse run bronze [--once]
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("bronze", sys.argv[1:]))
