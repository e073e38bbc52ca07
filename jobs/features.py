"""`lakehouse run features`: silver -> feature tables (gold.feat_*) -> Feast registry -> Redis (incremental
materialization), then the online / offline skew check

    spark-submit jobs/features.py --env local [--once]
    lakehouse run features
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("features", sys.argv[1:]))
