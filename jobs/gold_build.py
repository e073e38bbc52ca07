"""silver Delta -> gold Delta: the star schema (dimensions, facts) and the pre-aggregated tables.

    spark-submit jobs/gold_build.py --env local [--once]
    lakehouse run gold [--once]
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("gold", sys.argv[1:]))
