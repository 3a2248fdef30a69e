"""SteadyRank cli."""
