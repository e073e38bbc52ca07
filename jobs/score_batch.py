"""`lakehouse run score`: batch fraud scoring with the champion (spark_udf) into gold.fact_payment_scores

    spark-submit jobs/score_batch.py --env local [--once]
    lakehouse run score
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("score", sys.argv[1:]))
