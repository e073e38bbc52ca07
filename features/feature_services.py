"""Feature services: the versioned sets of features a model is trained and served with."""

from feast import FeatureService

from features.feature_views import BATCH_VIEWS, STREAM_VIEWS

fraud_detection_v1 = FeatureService(
    name="fraud_detection_v1", features=BATCH_VIEWS + STREAM_VIEWS,
    description="Fraud model inputs: customer / card / IP velocity, novelty, usual location, merchant and "
                "terminal risk with label delay, and the streaming 5-minute counts.")
