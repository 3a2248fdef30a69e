"""Process-wide settings the ``steadyrank`` command makes before TensorFlow is imported.

Only the command (the process owner) calls this; importing library modules changes nothing.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from pathlib import Path


def nvidia_device_present(dev: Path = Path("/dev")) -> bool:
    """True when the machine has an NVIDIA GPU device node (cheap: no CUDA call)."""
    return (dev / "nvidiactl").exists() or any(dev.glob("nvidia[0-9]*"))


def prepare(env: MutableMapping[str, str] | None = None, gpu: bool | None = None,
            verbose: bool = False) -> None:
    """Sets the environment TensorFlow reads at import, keeping values the user set.

    - ``TF_USE_LEGACY_KERAS=1``: tensorflow-recommenders needs Keras 2 (tf-keras).
    - ``TF_ENABLE_ONEDNN_OPTS=0`` on a machine with an NVIDIA GPU: with oneDNN's graph rewrite,
      TensorFlow 2.21 fuses a layer norm into ``_MklLayerNorm``, a CPU-only kernel, and then
      places it on the GPU, so exporting a trained model fails there.
    - Quiet unless ``verbose`` or ``STEADYRANK_LOG=debug``: TensorFlow's C++ info and warning
      lines off (``TF_CPP_MIN_LOG_LEVEL=2``) and its Python logger at ERROR; without a GPU,
      CUDA is hidden (``CUDA_VISIBLE_DEVICES=""``) so TensorFlow does not look for one.
    """
    env = os.environ if env is None else env
    env.setdefault("TF_USE_LEGACY_KERAS", "1")
    has_gpu = nvidia_device_present() if gpu is None else gpu
    if has_gpu:
        env.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    else:
        env.setdefault("CUDA_VISIBLE_DEVICES", "")
    if verbose or env.get("STEADYRANK_LOG", "").lower() == "debug":
        env.setdefault("STEADYRANK_LOG", "debug")  # child processes show everything too
        return
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
