"""The settings of ``steadyrank serve`` and what follows from them alone.

Light on purpose (no TensorFlow, no gRPC): the supervisor of ``serve --workers N`` reads and
checks them without loading what its workers load.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DEFAULT_MAX_QUERIES = 256  # queries of one batched Rank request
DEFAULT_MAX_RANK_PAIRS = 100_000  # (user, item) pairs one batched Rank request may score


@dataclass
class ServerConfig:
    """Settings of ``steadyrank serve`` (the CLI flags of the same names)."""

    model_base_path: Path = Path("models")
    port: int = 8500
    metrics_port: int = 8502  # 0 picks a free port; -1 serves no metrics endpoint
    host: str = "[::]"
    poll_seconds: float = 2.0
    batching: bool = True
    max_batch_rows: int = 8192
    max_queue: int = 1024
    max_wait_ms: float = 0.0
    model_threads: int = 1
    max_concurrent_rpcs: int = 4096
    max_candidates: int = 10_000
    max_queries: int = DEFAULT_MAX_QUERIES  # queries of one batched Rank request
    max_rank_pairs: int = DEFAULT_MAX_RANK_PAIRS  # pairs one batched Rank request scores
    # TF Serving accepts 2 GiB messages; one such request would take a few GiB of a host.
    max_message_bytes: int = 64 << 20
    max_inflight_bytes: int = 256 << 20  # request bodies being handled at once
    max_request_elements: int = 100_000  # elements of one Predict input (declared shape)
    max_string_bytes: int = 1 << 20  # bytes of the strings of one Predict input
    metrics_host: str | None = None  # None: the --host address
    handshake_timeout: float = 10.0  # seconds a new connection has to start HTTP/2
    shutdown_grace: float = 30.0
    shadow_rate: float = 0.1
    shadow_queue: int = 256
    churn_rate: float = 0.1
    churn_window: float = 600.0  # seconds the replaced version is kept after a switch
    wait_for_models: float = 0.0  # seconds to wait for a first version before serving
    # Set by the supervisor of ``serve --workers N`` for each worker process:
    worker: str | None = None  # the worker's index (metrics in multiprocess files)
    reuse_port: bool = False  # share the port with the other workers (SO_REUSEPORT)
    ready_file: Path | None = None  # written once this worker has loaded and listens
    serving_gate: Path | None = None  # health says NOT_SERVING until this file exists
    parent_pid: int | None = None  # stop (draining) if this process stops being the parent
    # After this many version loads (0: never) the worker writes recycle_file, asking the
    # supervisor for a fresh process (TensorFlow keeps ~0.25 MB per SavedModel load).
    recycle_after_loads: int = 0
    recycle_file: Path | None = None

    def validate(self) -> None:
        """ValueError naming the first bad setting."""
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
        if self.recycle_after_loads < 0:
            raise ValueError(f"--recycle-after-loads must be >= 0, got "
                             f"{self.recycle_after_loads}")
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


def body_limits(config: ServerConfig) -> dict[str, tuple[int, str]]:
    """The largest body a valid request of each method can have, with the flags behind it.

    Generous (11 bytes per int64 varint, 64 KiB for everything else), so only requests that
    a size check would refuse anyway are refused here, before they are parsed.
    """
    slack = 64 << 10
    per_input = config.max_request_elements * 11 + config.max_string_bytes
    return {
        # Candidates: at most max(--max-candidates, --max-rank-pairs) in all; user ids and
        # features: under 4 KiB per query.
        "Rank": (max(config.max_candidates, config.max_rank_pairs) * 11
                 + config.max_queries * (4 << 10) + slack,
                 f"at most {config.max_candidates} candidates, or {config.max_rank_pairs} in "
                 f"{config.max_queries} queries: server flags --max-candidates, "
                 "--max-rank-pairs, --max-queries"),
        "Predict": (8 * per_input + slack,
                    f"at most {config.max_request_elements} elements per input: server flag "
                    "--max-request-elements"),
        "Regress": (config.max_request_elements * 128 + slack,
                    f"at most {config.max_request_elements} examples: server flag "
                    "--max-request-elements"),
        **{m: (slack, "it names a model") for m in ("GetModelMetadata", "GetModelStatus",
                                                    "Classify", "MultiInference",
                                                    "HandleReloadConfigRequest")},
    }
