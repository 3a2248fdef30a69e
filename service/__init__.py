"""SteadyRank service."""
