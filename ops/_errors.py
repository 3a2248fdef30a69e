"""Errors of the op package."""


class BuildError(RuntimeError):
    """The op library could not be built; the message says what to do."""
