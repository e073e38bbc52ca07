"""`lakehouse run train`: fraud models from a point-in-time Feast training set, logged to MLflow; the best
becomes the challenger

    spark-submit jobs/train_fraud.py --env local [--once]
    lakehouse run train
"""

import sys

from lakehouse.common.jobs import run_job

if __name__ == "__main__":
    sys.exit(run_job("train", sys.argv[1:]))
