"""`lakehouse run promote`: the promotion gate: challenger -> champion only when it beats the champion on the
same held-out window

    spark-submit jobs/promote.py --env local [--once]
    lakehouse run promote
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("promote", sys.argv[1:]))
