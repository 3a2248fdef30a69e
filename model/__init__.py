"""SteadyRank model."""
