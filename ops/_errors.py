"""The error base of every SteadyRank package, and the op package's own errors.

It lives in the lowest layer so that model, service and cli errors can all derive from it.
``exit_code`` is what the ``steadyrank`` command returns when the error ends it: 1 for a
failure (bad data, a failed build or export), 2 for a caller's mistake (a bad argument).
"""


class SteadyRankError(Exception):
    """Base of SteadyRank's errors; the message says what went wrong and what to do."""

    exit_code = 1


class BuildError(SteadyRankError, RuntimeError):
    """The op library could not be built; the message says what to do."""
