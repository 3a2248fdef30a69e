"""The op package's own error; the base class lives in :mod:`steadyrank.core.errors`."""

from steadyrank.core.errors import SteadyRankError


class BuildError(SteadyRankError, RuntimeError):
    """The op library could not be built; the message says what to do."""
