"""The settings of ``steadyrank serve``, their defaults, and what follows from them alone.

:class:`ServerConfig` is the one owner of the server's defaults: the ``serve`` flags are
generated from its fields (a field ``max_queue`` is the flag ``--max-queue``) and their help
text from the docstring under each field, so a default or its description is written once.
Light on purpose (no TensorFlow, no gRPC): the supervisor of ``serve --workers N`` and the
clients read it without loading what the workers load.
"""

from __future__ import annotations

import ast
import functools
import inspect
import signal
import textwrap
from dataclasses import dataclass, field, fields
from pathlib import Path

# The signal a supervisor sends a worker it has replaced (recycling): stop at once, so its
# clients' connections move to the successor; SIGTERM drains (see Server.stop).
HANDOVER_SIGNAL = signal.SIGUSR1
MAX_VALUE_CHARS = 256  # a feature value in a Rank request is a word or a code, not a text
MAX_ID_CHARS = 64  # a string id (a UUID is 36)

DEFAULT_PORT = 8500  # gRPC, as TF Serving's
DEFAULT_METRICS_PORT = 8502  # Prometheus /metrics (TF Serving's REST port 8501 stays free)
DEFAULT_SERVER = f"localhost:{DEFAULT_PORT}"  # where clients look by default
# Version loads before a worker is replaced (under the supervisor): at ~0.25 MB kept by
# TensorFlow per load, about 25 MB at most; hourly retrains recycle every few days.
DEFAULT_RECYCLE_AFTER_LOADS = 100
# TF Serving's gRPC message limit (INT_MAX, both directions): what clients accept.
MAX_MESSAGE_BYTES = 2**31 - 1
INTERNAL = {"flag": False}  # field metadata: set by the supervisor, not a flag


@dataclass
class ServerConfig:
    """Settings of ``steadyrank serve``; each field is the flag of the same name."""

    model_base_path: Path = Path("models")
    """folder of models in TF Serving layout NAME/VERSION/; NAME-b is the second replica of
    NAME"""
    port: int = DEFAULT_PORT
    """gRPC port (0 picks a free one)"""
    metrics_port: int = DEFAULT_METRICS_PORT
    """Prometheus /metrics port (0 picks a free one; -1: no metrics endpoint)"""
    host: str = "[::]"
    """address to listen on"""
    metrics_host: str | None = None
    """address of the metrics endpoint (default: --host)"""
    workers: int | None = None
    """server processes accepting on the port (SO_REUSEPORT) under one supervisor, with one
    metrics endpoint (default: the usable cores, honouring CPU affinity and cgroup quotas;
    1: a single process)"""
    recycle_after_loads: int | None = None
    """replace a worker process by a fresh one after N model version loads (the successor
    starts and loads first, then the old one drains): TensorFlow keeps ~0.25 MB of every
    load for the life of a process (default 100 with --workers > 1; 0: never; with
    --workers 1 a value > 0 runs the one worker under a supervisor)"""
    poll_seconds: float = 2.0
    """how often to look for new versions, in seconds (0: never)"""
    batching: bool = True
    """merge concurrent requests into few model calls (--no-batching: one model call per
    request, the naive baseline)"""
    max_batch_rows: int = 8192
    """most (user, item) pairs per model call"""
    max_queue: int = 1024
    """requests waiting for the model before RESOURCE_EXHAUSTED"""
    max_wait_ms: float = 0.0
    """how long a batch waits to fill up (0: take what is queued)"""
    model_threads: int = 1
    """model calls running at once"""
    max_concurrent_rpcs: int = 4096
    """RPCs in progress before RESOURCE_EXHAUSTED"""
    max_candidates: int = 10_000
    """most candidate items in one Rank request"""
    max_queries: int = 256
    """most queries (users) in one batched Rank request"""
    max_rank_pairs: int = 100_000
    """most (user, item) pairs one batched Rank request scores, over all its queries"""
    max_message_bytes: int = 64 << 20
    """largest request or response in bytes (TF Serving allows 2 GiB, which a few requests
    would turn into many GiB of memory)"""
    max_inflight_bytes: int = 256 << 20
    """request bytes being handled at once; more is refused with RESOURCE_EXHAUSTED, not
    queued"""
    max_request_elements: int = 100_000
    """elements of one Predict input or Regress examples, checked on the declared shape
    before decoding"""
    max_string_bytes: int = 1 << 20
    """bytes of the strings of one Predict input"""
    handshake_timeout: float = 10.0
    """seconds a connection has to start HTTP/2 before it is closed"""
    shutdown_grace: float = 30.0
    """seconds in-flight requests get to finish on SIGTERM"""
    shadow_rate: float = 0.1
    """fraction of requests (Rank, and the rows of Predict, Classify and Regress) also scored
    by the second replica NAME-b to measure replica disagreement (0: off)"""
    shadow_queue: int = 256
    """sampled requests waiting for shadow scoring before drops"""
    churn_rate: float = 0.1
    """fraction of requests also scored by the replaced version during the churn window
    after a version switch (0: off)"""
    churn_window: float = 600.0
    """seconds the replaced version is kept after a switch to measure churn (0: off)"""
    unknown_ids: str = "score"
    """ids a model has never seen (new items, new users), on every API: score (what the
    export computes: the out-of-vocabulary row and default facts) or reject
    (INVALID_ARGUMENT naming them); counted in steadyrank_unknown_ids_total either way"""
    record_requests: Path | None = None
    """keep a sample of the answered requests' rows in rotating files under DIR/MODEL/, for
    steadyrank monitor --requests (default: none)"""
    record_rate: float = 0.01
    """fraction of requests --record-requests keeps"""
    record_files: int = 50
    """most request files kept per model (and worker) by --record-requests; the oldest go
    first"""
    wait_for_models: float = 0.0
    """before serving, wait up to this many seconds for a first model version (beside a
    trainer that has not exported yet; 0: do not wait)"""
    # Set by the supervisor of ``serve --workers N`` for each worker process:
    worker: str | None = field(default=None, metadata=INTERNAL)
    """the worker's index (metrics in multiprocess files)"""
    reuse_port: bool = field(default=False, metadata=INTERNAL)
    """share the port with the other workers (SO_REUSEPORT)"""
    ready_file: Path | None = field(default=None, metadata=INTERNAL)
    """written once this worker has loaded and listens"""
    serving_gate: Path | None = field(default=None, metadata=INTERNAL)
    """health says NOT_SERVING until this file exists"""
    parent_pid: int | None = field(default=None, metadata=INTERNAL)
    """stop (draining) if this process stops being the parent"""
    recycle_file: Path | None = field(default=None, metadata=INTERNAL)
    """written after recycle_after_loads version loads, asking the supervisor for a fresh
    process"""

    @property
    def recycle_loads(self) -> int:
        """Version loads before this process asks to be recycled (0: never)."""
        return self.recycle_after_loads or 0

    def validate(self) -> None:
        """ValueError naming the first bad setting."""
        if self.workers is not None and self.workers < 1:
            raise ValueError(f"--workers must be >= 1, got {self.workers}")
        if not self.model_base_path.is_dir():
            raise ValueError(f"--model-base-path {self.model_base_path}: not a folder")
        for name in ("max_batch_rows", "max_queue", "model_threads", "max_concurrent_rpcs",
                     "max_candidates", "max_queries", "max_rank_pairs", "max_message_bytes",
                     "max_inflight_bytes", "max_request_elements", "max_string_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, "
                                 f"got {getattr(self, name)}")
        for name in ("port", "metrics_port"):
            value = getattr(self, name)
            if not -1 <= value <= 65535:
                raise ValueError(f"--{name.replace('_', '-')} {value}: not a port")
        for name in ("shadow_rate", "churn_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name.replace('_', '-')} {getattr(self, name)}: must be "
                                 "in [0, 1]")
        if self.recycle_after_loads is not None and self.recycle_after_loads < 0:
            raise ValueError(f"--recycle-after-loads must be >= 0, got "
                             f"{self.recycle_after_loads}")
        if not 0.0 < self.record_rate <= 1.0:
            raise ValueError(f"--record-rate {self.record_rate}: must be in (0, 1]")
        if self.record_files < 1:
            raise ValueError(f"--record-files must be >= 1, got {self.record_files}")
        if self.unknown_ids not in ("score", "reject"):
            raise ValueError(f"--unknown-ids {self.unknown_ids!r}: must be score or reject")
        if self.shadow_queue < 1:
            raise ValueError(f"--shadow-queue must be >= 1, got {self.shadow_queue}")
        if self.max_inflight_bytes < self.max_message_bytes:
            raise ValueError(f"--max-inflight-bytes {self.max_inflight_bytes} must be >= "
                             f"--max-message-bytes {self.max_message_bytes}")
        if not self.handshake_timeout > 0:
            raise ValueError(f"--handshake-timeout must be > 0, got {self.handshake_timeout}")
        for name in ("poll_seconds", "max_wait_ms", "shutdown_grace", "churn_window",
                     "wait_for_models"):
            if getattr(self, name) < 0:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 0, "
                                 f"got {getattr(self, name)}")


@functools.cache
def field_help(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass, by field name (whitespace joined)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    found = {}
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)):
            found[node.target.id] = " ".join(after.value.value.split())
    return found


def flag_fields(cls: type = ServerConfig) -> list:
    """The fields of a settings dataclass that are command-line flags."""
    return [f for f in fields(cls) if f.metadata.get("flag", True)]


def body_limits(config: ServerConfig) -> dict[str, tuple[int, str]]:
    """The largest body a valid request of each method can have, with the flags behind it.

    Generous (11 bytes per int64 varint, 64 KiB for everything else), so only requests that
    a size check would refuse anyway are refused here, before they are parsed.
    """
    slack = 64 << 10
    per_input = config.max_request_elements * 11 + config.max_string_bytes
    return {
        # Candidates: at most max(--max-candidates, --max-rank-pairs) in all, each an int64
        # varint or a string id of up to 64 characters; user ids and features: under
        # 16 KiB per query.
        "Rank": (max(config.max_candidates, config.max_rank_pairs) * (MAX_ID_CHARS + 3)
                 + config.max_queries * (16 << 10) + slack,
                 f"at most {config.max_candidates} candidates, or {config.max_rank_pairs} in "
                 f"{config.max_queries} queries: server flags --max-candidates, "
                 "--max-rank-pairs, --max-queries"),
        "Predict": (8 * per_input + slack,
                    f"at most {config.max_request_elements} elements per input: server flag "
                    "--max-request-elements"),
        # Examples: at most --max-string-bytes of them in all (what the examples signature
        # takes as one input), a few bytes of framing each.
        **{m: (config.max_string_bytes + config.max_request_elements * 8 + slack,
               f"at most {config.max_string_bytes} bytes of examples: server flag "
               "--max-string-bytes") for m in ("Regress", "Classify")},
        **{m: (slack, "it names a model") for m in ("GetModelMetadata", "GetModelStatus",
                                                    "GetRequestSchema",
                                                    "MultiInference",
                                                    "HandleReloadConfigRequest")},
    }
