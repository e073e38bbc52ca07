"""Runtime self-check: write a deterministic batch to Delta, read it back by name, verify it.

    spark-submit jobs/selfcheck.py --env local [--rows 100000] [--seed 42]
    lakehouse run selfcheck
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("selfcheck", sys.argv[1:]))
