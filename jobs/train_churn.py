"""`lakehouse run churn`: subscription churn model from the feature store: train, register, batch-score into
gold.fact_churn_scores

    spark-submit jobs/train_churn.py --env local [--once]
    lakehouse run churn
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("churn", sys.argv[1:]))
