"""`lakehouse run monitor`: feature / score drift (PSI) and delayed-label performance of the champion into
gold.ml_monitoring; flags a retrain

    spark-submit jobs/monitor.py --env local [--once]
    lakehouse run monitor
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("monitor", sys.argv[1:]))
