"""bronze Delta -> silver Delta: CDC merge (SCD1 / SCD2), conformance, PII protection, data quality.

    spark-submit jobs/silver_apply.py --env local [--once]
    lakehouse run silver [--once]
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("silver", sys.argv[1:]))
