"""Experiment configuration: data, model and training settings read from TOML."""

from __future__ import annotations

import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from steadyrank.core.errors import SteadyRankError
from steadyrank.ops.params import check_beta

ACTIVATIONS = ("relu", "smelu", "gsmelu", "gelu", "swish", "softplus")
GSMELU_PARAMS = ("alpha", "beta", "slope_left", "slope_right", "offset")
TASKS = ("rating", "binary")
DATASETS = ("movielens-100k", "synthetic")  # loaded by model/data/sources.py


STRATEGIES = ("default", "parameter-server", "mirrored")  # model/training/distributed.py


class ConfigError(SteadyRankError, ValueError):
    """A configuration value is missing or invalid; the message names it."""


@dataclass(frozen=True)
class DataConfig:
    """Which data and how it is split.

    ``dataset = "movielens-100k"`` is read from (and fetched into) ``data_dir``;
    ``dataset = "synthetic"`` reads the folder ``data_dir`` written by ``steadyrank data synth``.
    """

    dataset: str = "movielens-100k"
    data_dir: str = "data"
    eval_fraction: float = 0.2
    split: str = "random"
    split_seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the ranking model.

    ``activation = "gsmelu"`` is the learnable generalized SmeLU, initialised to SmeLU with
    ``smelu_beta``; ``gsmelu_learn`` names the parameters it learns, ``gsmelu_per_unit`` learns
    one value per hidden unit instead of one per layer.
    """

    embedding_dim: int = 16
    oov_buckets: int = 1
    cross_layers: int = 1
    deep_layers: tuple[int, ...] = (64, 32)
    activation: str = "smelu"
    smelu_beta: float = 1.0
    gsmelu_learn: tuple[str, ...] = ("beta",)
    gsmelu_per_unit: bool = False
    layer_norm: bool = False
    task: str = "rating"
    binary_threshold: float = 4.0  # rating >= threshold is a positive, for task = "binary"
    # Embedding stabilization: ids with fewer than min_id_count training rows share the
    # out-of-vocabulary row; an L2 penalty on the id embeddings; the uniform init range.
    min_id_count: int = 1
    embedding_l2: float = 0.0
    embedding_init_scale: float = 0.05


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings; ``ensemble`` > 1 trains that many seeds and averages them.

    ``strategy``: ``default`` (one machine), ``parameter-server`` or ``mirrored`` (the cluster
    in TF_CONFIG; see :mod:`steadyrank.model.training.distributed`).
    ``shuffle``: ``full`` (a fresh permutation every epoch), ``window:N`` (time order, each
    row moved by fewer than N places: a shuffle buffer over a stream) or ``time`` (time order).
    ``weight_averaging``: ``none``, ``ema:M`` (exponential moving average of the weights
    with momentum M) or ``polyak:F`` (the uniform average of the weights over the last
    fraction F of the run's steps); the averaged weights are evaluated and exported.
    ``codistill``: > 0 trains two towers together, each with its label loss plus this weight
    times its distance to the other's (stopped-gradient) prediction; one tower is exported.
    ``clip_norm``: > 0 clips each step's gradients to this global norm.
    ``lr_decay``: ``none`` (a constant learning rate), ``linear[:E]`` or ``cosine[:E]``
    (annealed over the run's steps from ``learning_rate`` down to E times it; E defaults
    to 0): the last steps move the weights less, so the end point of training varies less;
    in a single pass it also weights the late rows less (a cost in accuracy there).
    """

    epochs: int = 5
    batch_size: int = 256
    learning_rate: float = 0.005
    ensemble: int = 1
    strategy: str = "default"
    shuffle: str = "full"
    weight_averaging: str = "none"
    codistill: float = 0.0
    clip_norm: float = 0.0
    lr_decay: str = "none"


@dataclass(frozen=True)
class Config:
    """The whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/TOML-friendly)."""
        out = asdict(self)
        out["model"]["deep_layers"] = list(self.model.deep_layers)
        out["model"]["gsmelu_learn"] = list(self.model.gsmelu_learn)
        return out


def _section(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(known)}")
    values = {}
    for name, value in raw.items():
        default = getattr(cls(), name)
        if isinstance(default, tuple):
            if not isinstance(value, list | tuple):
                raise ConfigError(f"{where}.{name} must be a list, got {value!r}")
            value = tuple(value)
        elif isinstance(default, bool):
            if not isinstance(value, bool):
                raise ConfigError(f"{where}.{name} must be true or false, got {value!r}")
        elif isinstance(default, int | float) and (
                isinstance(value, bool) or not isinstance(value, int | float)):
            raise ConfigError(f"{where}.{name} must be a number, got {value!r}")
        elif isinstance(default, str) and not isinstance(value, str):
            raise ConfigError(f"{where}.{name} must be a string, got {value!r}")
        if isinstance(default, int) and not isinstance(default, bool) and value != int(value):
            raise ConfigError(f"{where}.{name} must be a whole number, got {value!r}")
        values[name] = type(default)(value) if not isinstance(default, tuple) else value
    return cls(**values)


def parse_shuffle(text: str) -> tuple[str, int]:
    """``"full"`` / ``"time"`` / ``"window:N"`` -> (kind, N); N is 0 but for windows."""
    kind, _, arg = text.partition(":")
    if kind in ("full", "time") and not arg:
        return kind, 0
    if kind == "window" and arg.isdigit() and int(arg) >= 1:
        return kind, int(arg)
    raise ValueError(f"bad shuffle {text!r}: expected full, time or window:N with N >= 1")


def parse_averaging(text: str) -> tuple[str, float]:
    """``"none"`` -> ("none", 0.0); ``"ema:M"`` -> ("ema", M) with 0 < M < 1;
    ``"polyak:F"`` -> ("polyak", F) with 0 < F <= 1."""
    if text == "none":
        return ("none", 0.0)
    kind, _, arg = text.partition(":")
    try:
        value = float(arg)
    except ValueError:
        value = -1.0
    if (kind == "ema" and 0 < value < 1) or (kind == "polyak" and 0 < value <= 1):
        return (kind, value)
    raise ValueError(f"bad weight averaging {text!r}: expected none, ema:M with 0 < M < 1 "
                     "or polyak:F with 0 < F <= 1")


def parse_decay(text: str) -> tuple[str, float]:
    """``"none"`` -> ("none", 1.0); ``"linear[:E]"`` / ``"cosine[:E]"`` -> (kind, E), the
    final learning rate as a fraction of the first, 0 <= E < 1 (default 0)."""
    if text == "none":
        return ("none", 1.0)
    kind, sep, arg = text.partition(":")
    try:
        end = float(arg) if sep else 0.0
    except ValueError:
        end = -1.0
    if kind in ("linear", "cosine") and 0 <= end < 1:
        return (kind, end)
    raise ValueError(f"bad learning-rate decay {text!r}: expected none, linear[:E] or "
                     "cosine[:E] with 0 <= E < 1")


def _parses(parse: Callable[[str], object], text: str) -> bool:
    """Whether ``parse`` accepts ``text`` (a setting with a small grammar of its own)."""
    try:
        parse(text)
    except ValueError:
        return False
    return True


def techniques(config: Config) -> dict[str, Any]:
    """The reproducibility techniques a config turns on (recorded in manifests and reports)."""
    m, t = config.model, config.train
    on: dict[str, Any] = {"activation": m.activation}
    if m.activation in ("smelu", "gsmelu"):
        on["smelu_beta"] = m.smelu_beta
    if m.activation == "gsmelu":
        on["gsmelu"] = {"learn": list(m.gsmelu_learn), "per_unit": m.gsmelu_per_unit}
    if m.layer_norm:
        on["layer_norm"] = True
    if t.weight_averaging != "none":
        on["weight_averaging"] = t.weight_averaging
    if t.codistill > 0:
        on["codistill"] = t.codistill
    if m.min_id_count > 1:
        on["min_id_count"] = m.min_id_count
    if m.embedding_l2 > 0:
        on["embedding_l2"] = m.embedding_l2
    if m.embedding_init_scale != ModelConfig.embedding_init_scale:
        on["embedding_init_scale"] = m.embedding_init_scale
    if t.shuffle != "full":
        on["shuffle"] = t.shuffle
    if t.ensemble > 1:
        on["ensemble"] = t.ensemble
    if t.clip_norm > 0:
        on["clip_norm"] = t.clip_norm
    if t.lr_decay != "none":
        on["lr_decay"] = t.lr_decay
    return on


def validate(config: Config) -> Config:
    """Checks ranges and choices; returns the config or raises ConfigError naming the key."""
    m, t, d = config.model, config.train, config.data
    checks = [
        (m.activation in ACTIVATIONS, "model.activation",
         f"must be one of {', '.join(ACTIVATIONS)}"),
        (m.task in TASKS, "model.task", f"must be one of {', '.join(TASKS)}"),
        (m.embedding_dim >= 1, "model.embedding_dim", "must be >= 1"),
        (m.oov_buckets >= 1, "model.oov_buckets", "must be >= 1"),
        (m.cross_layers >= 0, "model.cross_layers", "must be >= 0"),
        (all(isinstance(u, int) and u >= 1 for u in m.deep_layers), "model.deep_layers",
         "must be whole numbers >= 1"),
        (all(p in GSMELU_PARAMS for p in m.gsmelu_learn), "model.gsmelu_learn",
         f"must name parameters among {', '.join(GSMELU_PARAMS)}"),
        (t.epochs >= 1, "train.epochs", "must be >= 1"),
        (t.batch_size >= 1, "train.batch_size", "must be >= 1"),
        (t.learning_rate > 0, "train.learning_rate", "must be > 0"),
        (t.ensemble >= 1, "train.ensemble", "must be >= 1"),
        (t.strategy in STRATEGIES, "train.strategy", f"must be one of {', '.join(STRATEGIES)}"),
        (_parses(parse_shuffle, t.shuffle), "train.shuffle",
         "must be 'full', 'time' or 'window:N' with N >= 1"),
        (_parses(parse_averaging, t.weight_averaging), "train.weight_averaging",
         "must be 'none', 'ema:M' with 0 < M < 1 or 'polyak:F' with 0 < F <= 1"),
        (t.codistill >= 0, "train.codistill", "must be >= 0"),
        (t.clip_norm >= 0, "train.clip_norm", "must be >= 0"),
        (_parses(parse_decay, t.lr_decay), "train.lr_decay",
         "must be 'none', 'linear[:E]' or 'cosine[:E]' with 0 <= E < 1"),
        (m.min_id_count >= 1, "model.min_id_count", "must be >= 1"),
        (m.embedding_l2 >= 0, "model.embedding_l2", "must be >= 0"),
        (m.embedding_init_scale > 0, "model.embedding_init_scale", "must be > 0"),
        (0 < d.eval_fraction < 1, "data.eval_fraction", "must be in (0, 1)"),
        (d.split in ("random", "time"), "data.split", "must be 'random' or 'time'"),
        (d.dataset in DATASETS, "data.dataset", f"must be one of {', '.join(DATASETS)}"),
    ]
    for ok, key, rule in checks:
        if not ok:
            section, name = key.split(".")
            value = getattr(getattr(config, section), name)
            raise ConfigError(f"{key} {rule}, got {value!r}")
    try:
        check_beta(m.smelu_beta)
    except ValueError as err:
        raise ConfigError(f"model.smelu_beta: {err}") from None
    return config


def from_dict(raw: dict[str, Any], where: str = "config") -> Config:
    """Builds and validates a Config from a nested dict (sections data, model, train)."""
    unknown = sorted(set(raw) - {"data", "model", "train"})
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; known: data, "
                          "model, train")
    return validate(Config(
        data=_section(DataConfig, raw.get("data", {}), f"{where}: data"),
        model=_section(ModelConfig, raw.get("model", {}), f"{where}: model"),
        train=_section(TrainConfig, raw.get("train", {}), f"{where}: train"),
    ))


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"section.key=value"`` (value in TOML syntax, or a bare string) -> parts."""
    key, sep, value = text.partition("=")
    section, dot, name = key.strip().partition(".")
    if not sep or not dot or not name:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    return section, name, parsed


def with_overrides(config: Config, overrides: list[str] | tuple[str, ...]) -> Config:
    """The config with ``section.key=value`` overrides applied and validated."""
    raw = config.to_dict()
    for text in overrides:
        section, name, value = parse_override(text)
        if section not in raw:
            raise ConfigError(f"override {text!r}: unknown section {section!r}; known: "
                              f"{', '.join(raw)}")
        raw[section][name] = value
    return from_dict(raw, where="override")


def load(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Reads a TOML config file (then ``section.key=value`` overrides); errors name the key."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    config = from_dict(raw, where=str(path))
    return with_overrides(config, overrides) if overrides else config
