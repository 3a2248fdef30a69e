"""tensorflow-recommenders needs Keras 2 (tf-keras): ``TF_USE_LEGACY_KERAS=1`` must be set
before it is imported. The model and service packages import this module first; a value the
user set is kept."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
