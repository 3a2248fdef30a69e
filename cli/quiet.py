"""Keeps TensorFlow's native start-up chatter off the terminal.

TensorFlow 2.21 writes some C++ log lines before absl logging is initialised, and those
ignore ``TF_CPP_MIN_LOG_LEVEL``: the oneDNN and CPU-feature notices, "Could not find cuda
drivers", and on CPU-only machines an ``E0000 ... failed call to cuInit`` error. The command
routes file descriptor 2 through a pipe and drops exactly those lines; everything else,
SteadyRank's own messages, real errors and tracebacks, passes through unchanged.
"""

from __future__ import annotations

import atexit
import os
import re
import threading

NOISE = re.compile(
    rb"^(?:WARNING: All log messages before absl::InitializeLog\(\) is called"
    rb"|To enable the following instructions: "
    rb"|[IW]\d{4} [\d:.]+ +\d+ \w+\.cc:\d+\] "
    rb"|E\d{4} [\d:.]+ +\d+ cuda_platform\.cc:\d+\] failed call to cuInit)")


def is_noise(line: bytes) -> bool:
    """Whether a stderr line is TensorFlow start-up chatter."""
    return NOISE.match(line) is not None


class StderrFilter:
    """Filters fd 2 through a pipe until :meth:`close` (registered at exit)."""

    def __init__(self) -> None:
        self.original = os.dup(2)
        read_fd, write_fd = os.pipe()
        os.dup2(write_fd, 2)
        os.close(write_fd)
        self.thread = threading.Thread(target=self._pump, args=(read_fd,), daemon=True,
                                       name="stderr-filter")
        self.thread.start()
        atexit.register(self.close)

    def _pump(self, read_fd: int) -> None:
        pending = b""
        with os.fdopen(read_fd, "rb", buffering=0) as source:
            while chunk := source.read(65536):
                pending += chunk
                *lines, pending = pending.split(b"\n")
                kept = b"".join(line + b"\n" for line in lines if not is_noise(line))
                if kept:
                    os.write(self.original, kept)
        if pending and not is_noise(pending):
            os.write(self.original, pending)

    def close(self) -> None:
        """Puts the original stderr back and lets the filter drain what it still holds."""
        os.dup2(self.original, 2)  # closes the pipe's last writer of ours: the pump sees EOF
        self.thread.join(timeout=2.0)


def install(env: dict[str, str] | os._Environ) -> StderrFilter | None:
    """Filters the chatter unless ``STEADYRANK_LOG=debug`` (then everything shows)."""
    if env.get("STEADYRANK_LOG", "").lower() == "debug":
        return None
    return StderrFilter()
