"""`lakehouse run stream_scoring`: new payments in silver (Change Data Feed) -> streaming features pushed to
Redis and fraud scores with online features, within seconds; --once: catch up and stop

    spark-submit jobs/stream_scoring.py --env local [--once]
    lakehouse run stream_scoring
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("stream_scoring", sys.argv[1:]))
