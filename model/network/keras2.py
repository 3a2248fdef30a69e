"""tensorflow-recommenders needs Keras 2 (tf-keras): ``TF_USE_LEGACY_KERAS=1`` must be set
before it is imported. The network package imports this module first (and the command sets
it at start-up); a value the user set is kept."""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
