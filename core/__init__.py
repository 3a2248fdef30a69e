"""SteadyRank's shared foundations, below every other package.

- :mod:`steadyrank.core.errors`: the error base (``SteadyRankError``) and the data error;
- :mod:`steadyrank.core.log`: progress lines on stderr, and the rows/s-and-ETA meter of long
  passes;
- :mod:`steadyrank.core.fileio`: atomic writes and SHA-256 checksums.

It imports nothing from the rest of SteadyRank and nothing heavy (no TensorFlow, no gRPC),
and importing it sets nothing: every package (ops, model, service, cli) may use it.
"""
