"""Experiment configuration: data, schema, model and training settings read from TOML.

Sections: ``[data]`` (where the rows are and how they are split), ``[label]`` and
``[[features]]`` (the schema, see :mod:`steadyrank.model.schema`; formats with a preset imply
it), ``[model]`` and ``[train]``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from steadyrank.core.errors import SteadyRankError
from steadyrank.model.schema import Feature, Label, SchemaError, parse_feature, parse_schema
from steadyrank.ops.params import check_beta

ACTIVATIONS = ("relu", "smelu", "gsmelu", "gelu", "swish", "softplus")
GSMELU_PARAMS = ("alpha", "beta", "slope_left", "slope_right", "offset")
TASKS = ("rating", "binary")
# Formats of [data]: files of your own. Dataset presets (formats with rows of their own,
# schemas by name) are the data room's registry (steadyrank.model.data.presets), which
# checks the names that refer to them.
FILE_FORMATS = ("parquet", "csv", "criteo")
NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")  # a preset's name
LOADS = ("auto", "memory", "stream")


STRATEGIES = ("default", "parameter-server", "mirrored")  # model/training/distributed.py
# Optimizers of the embedding tables ([train.embeddings]): "adam" is the tower's dense Adam
# over the tables too (every row's moments decay each step); the others are row-sparse.
EMBEDDING_OPTIMIZERS = ("adam", "adagrad", "lazy_adam", "ftrl", "sgd")
SPARSE_OPTIMIZERS = EMBEDDING_OPTIMIZERS[1:]
EMBEDDING_INITS = ("uniform", "normal", "zeros")


class ConfigError(SteadyRankError, ValueError):
    """A configuration value is missing or invalid; the message names it."""


@dataclass(frozen=True)
class DataConfig:
    """Which data, how it is read and how it is split.

    ``format``: ``parquet``, ``csv`` or ``criteo`` (headerless TSV: label, I1..I13, C1..C26)
    read from the files or globs in ``train`` (and ``eval``, or else carved from train by
    ``eval_fraction`` and ``split``), in sorted order; or ``movielens-100k`` (read from, and
    fetched into, ``data_dir``) or ``synthetic`` (the folder ``data_dir`` written by
    ``steadyrank data synth``), which bring their schemas. ``dataset`` is the older name of
    ``format`` for those two. ``time_column``: ``split = "time"`` and the ``time`` and
    ``window:N`` row orders follow it; user and item facts take their latest value by it.
    ``schema``: a preset by name (``criteo``: label, I1..I13, C1..C26) for files in that
    shape, instead of declaring ``[label]`` and ``[[features]]``; ``[[features]]`` entries
    alone then override its features by name (:mod:`steadyrank.model.data.presets`).
    ``delimiter``, ``header`` and ``columns``: CSV only; a file without a header holds
    ``columns`` in order (default: the features in declared order, the label, then the time
    column). ``load``: ``memory`` holds the rows in memory
    (any row order), ``stream`` reads them from the files on every pass (never more than a
    few batches in memory; the ``full`` row order is refused), ``auto`` holds them when they
    fit ``memory_budget_mb``.
    """

    dataset: str = "movielens-100k"
    data_dir: str = "data"
    eval_fraction: float = 0.2
    split: str = "random"
    split_seed: int = 0
    format: str = ""
    train: tuple[str, ...] = ()
    eval: tuple[str, ...] = ()
    time_column: str = ""
    delimiter: str = ","
    header: bool = True
    columns: tuple[str, ...] = ()
    load: str = "auto"
    memory_budget_mb: int = 1024
    follow: bool = False
    schema: str = ""  # a preset schema by name ("criteo") instead of [label], [[features]]

    @property
    def source(self) -> str:
        """The effective format: ``format``, or the legacy ``dataset``."""
        return self.format or self.dataset


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
    # "uniform:S", "normal:S" (standard deviation S) or "zeros"; empty: uniform with
    # embedding_init_scale (the older key), on the same (primary) tables.
    embedding_init: str = ""

    @property
    def table_init(self) -> tuple[str, float]:
        """The primary tables' initializer: (kind, scale), scale 0 for zeros."""
        return parse_embedding_init(self.embedding_init or
                                    f"uniform:{self.embedding_init_scale}")


@dataclass(frozen=True)
class EmbeddingTrainConfig:
    """How the embedding tables are trained (``[train.embeddings]``), apart from the tower.

    ``optimizer``: ``adam`` (the tower's own Adam over every weight: its sparse path still
    decays every row's moments each step, so its cost grows with table size) or a
    row-sparse one, which reads and writes only the rows a batch uses and their slots:
    ``adagrad`` (``initial_accumulator``), ``lazy_adam`` (moments of the used rows only;
    ``beta_1``, ``beta_2``, ``epsilon``), ``ftrl`` (``l1``, ``l2``,
    ``initial_accumulator``) or ``sgd``. ``learning_rate`` 0 takes ``train.learning_rate``;
    ``train.lr_decay`` anneals it alike, ``train.clip_norm`` clips all gradients together,
    and ``train.weight_averaging`` averages the rows lazily (each row catches up when it is
    next used, and at the end).
    """

    optimizer: str = "adam"
    learning_rate: float = 0.0
    initial_accumulator: float = 0.1
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-7
    l1: float = 0.0
    l2: float = 0.0

    @property
    def sparse(self) -> bool:
        """Whether the tables have an optimizer of their own (a row-sparse one)."""
        return self.optimizer != "adam"


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
    ``checkpoint_minutes``: a checkpoint (weights, optimizer, step and the reader's position)
    is written at the first step after this many minutes, and after every epoch; a killed
    run resumes from it, inside the pass. ``checkpoint_steps`` > 0: every that many steps
    instead (for tests and short runs).
    ``embeddings``: the tables' optimizer (:class:`EmbeddingTrainConfig`).
    ``table_memory_mb``: the budget of the tables and their slots (0: 80% of the machine's
    memory); a model over it is refused before it trains.
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
    checkpoint_minutes: float = 10.0
    checkpoint_steps: int = 0
    embeddings: EmbeddingTrainConfig = field(default_factory=EmbeddingTrainConfig)
    # Continuous training: each round also replays the most recent shards holding at least
    # this many rows (whole shards; 0: the new shards alone).
    replay_rows: int = 0
    # The most the embedding tables and their optimizer slots may take, in MiB; a model
    # over it is refused before training. 0: 80% of this machine's physical memory.
    table_memory_mb: int = 0


MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
DEFAULT_MODEL_NAME = "ml"  # a config read from no file, naming nothing


@dataclass(frozen=True)
class ServingConfig:
    """How the trained model is served (``[serving]``): ``name`` is the model's name on the
    server (its replica is NAME-b); empty: the config file's stem (``shop.toml`` serves
    ``shop``). Not part of what a model is: renaming retrains nothing."""

    name: str = ""


@dataclass(frozen=True)
class Config:
    """The whole experiment."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    label: Label | None = None  # with features: the declared schema; else the format's preset
    features: tuple[Feature, ...] = ()
    serving: ServingConfig = field(default_factory=ServingConfig)

    @property
    def task(self) -> str:
        """``binary`` or ``rating``: the declared label's task, else ``model.task``."""
        return self.label.task if self.label is not None else self.model.task

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/TOML-friendly); ``label`` and ``features`` only when declared."""
        out = {"data": asdict(self.data), "model": asdict(self.model),
               "train": asdict(self.train)}
        for key in ("train", "eval", "columns"):
            out["data"][key] = list(getattr(self.data, key))
        out["model"]["deep_layers"] = list(self.model.deep_layers)
        out["model"]["gsmelu_learn"] = list(self.model.gsmelu_learn)
        if self.label is not None:
            schema = parse_schema(asdict(self.label), [f.to_dict() for f in self.features])
            out.update(schema.to_dict())
        elif self.features:  # overrides of a preset's features
            out["features"] = [f.to_dict() for f in self.features]
        if self.serving.name:
            out["serving"] = asdict(self.serving)
        return out

    def model_name(self, path: str | Path | None = None) -> str:
        """The served model's name: ``serving.name``, else the config file's stem, else
        ``ml``."""
        return self.serving.name or (Path(path).stem if path else DEFAULT_MODEL_NAME)


def _section(cls: type, raw: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                          f"{', '.join(known)}")
    values = {}
    for name, value in raw.items():
        default = getattr(cls(), name)
        if is_dataclass(default):  # a sub-table, such as [train.embeddings]
            if not isinstance(value, dict):
                raise ConfigError(f"{where}.{name} must be a table, got {value!r}")
            values[name] = _section(type(default), value, f"{where}.{name}")
            continue
        if isinstance(default, tuple):
            if isinstance(value, str) and name in ("train", "eval"):
                value = [value]  # one file or glob
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


def parse_embedding_init(text: str) -> tuple[str, float]:
    """``"uniform:S"`` / ``"normal:S"`` with S > 0 -> (kind, S); ``"zeros"`` -> ("zeros", 0)."""
    kind, sep, arg = text.partition(":")
    if kind == "zeros" and not sep:
        return ("zeros", 0.0)
    try:
        scale = float(arg) if sep else -1.0
    except ValueError:
        scale = -1.0
    if kind in ("uniform", "normal") and scale > 0 and scale != float("inf"):
        return (kind, scale)
    raise ValueError(f"bad embedding init {text!r}: expected uniform:S or normal:S with "
                     "S > 0, or zeros")


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
    if m.embedding_init:
        on["embedding_init"] = m.embedding_init
    elif m.embedding_init_scale != ModelConfig.embedding_init_scale:
        on["embedding_init_scale"] = m.embedding_init_scale
    if t.embeddings.sparse:
        e = t.embeddings
        on["embedding_optimizer"] = {"optimizer": e.optimizer,
                                     "learning_rate": e.learning_rate or t.learning_rate}
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
        (config.serving.name == "" or (bool(MODEL_NAME.match(config.serving.name))
                                       and not config.serving.name.endswith("-b")),
         "serving.name", "must be letters, digits, '_', '.' or '-' (not starting with one of "
         "the last three) and not end in -b (NAME-b is the second replica)"),
        (m.embedding_init == "" or _parses(parse_embedding_init, m.embedding_init),
         "model.embedding_init", "must be 'uniform:S' or 'normal:S' with S > 0, or 'zeros'"),
        (t.table_memory_mb >= 0, "train.table_memory_mb", "must be >= 0"),
        (t.replay_rows >= 0, "train.replay_rows", "must be >= 0"),
        (not d.follow or d.source in FILE_FORMATS, "data.follow",
         "needs files to follow: format parquet, csv or criteo"),
        (0 < d.eval_fraction < 1, "data.eval_fraction", "must be in (0, 1)"),
        (d.split in ("random", "time"), "data.split", "must be 'random' or 'time'"),
        (bool(NAME.match(d.dataset)), "data.dataset", "must name a dataset preset"),
        (d.format == "" or bool(NAME.match(d.format)), "data.format",
         f"must be one of {', '.join(FILE_FORMATS)} or a dataset preset's name"),
        (d.schema == "" or bool(NAME.match(d.schema)), "data.schema",
         "must name a preset schema"),
        (not d.schema or d.source in FILE_FORMATS, "data.schema",
         "applies to files (format parquet, csv or criteo); the other formats bring theirs"),
        (d.load in LOADS, "data.load", f"must be one of {', '.join(LOADS)}"),
        (d.memory_budget_mb >= 1, "data.memory_budget_mb", "must be >= 1"),
        (len(d.delimiter) == 1, "data.delimiter", "must be one character"),
        (all(isinstance(p, str) and p for p in (*d.train, *d.eval)), "data.train",
         "must list files or globs"),
        (d.source not in FILE_FORMATS or bool(d.train), "data.train",
         f"must list the files or globs to read for format {d.source!r}"),
        (t.checkpoint_minutes > 0, "train.checkpoint_minutes", "must be > 0"),
        (t.checkpoint_steps >= 0, "train.checkpoint_steps", "must be >= 0"),
    ]
    e = t.embeddings
    checks += [
        (e.optimizer in EMBEDDING_OPTIMIZERS, "train.embeddings.optimizer",
         f"must be one of {', '.join(EMBEDDING_OPTIMIZERS)}"),
        (e.learning_rate >= 0, "train.embeddings.learning_rate",
         "must be >= 0 (0: train.learning_rate)"),
        (e.initial_accumulator > 0, "train.embeddings.initial_accumulator", "must be > 0"),
        (0 <= e.beta_1 < 1, "train.embeddings.beta_1", "must be in [0, 1)"),
        (0 <= e.beta_2 < 1, "train.embeddings.beta_2", "must be in [0, 1)"),
        (e.epsilon > 0, "train.embeddings.epsilon", "must be > 0"),
        (e.l1 >= 0, "train.embeddings.l1", "must be >= 0"),
        (e.l2 >= 0, "train.embeddings.l2", "must be >= 0"),
        (not e.sparse or t.strategy != "mirrored", "train.embeddings.optimizer",
         "must be 'adam' under train.strategy 'mirrored' (its all-reduce makes the tables' "
         "gradients dense); use 'default' or 'parameter-server'"),
    ]
    for ok, key, rule in checks:
        if not ok:
            value: Any = config
            for part in key.split("."):
                value = getattr(value, part)
            raise ConfigError(f"{key} {rule}, got {value!r}")
    try:
        check_beta(m.smelu_beta)
    except ValueError as err:
        raise ConfigError(f"model.smelu_beta: {err}") from None
    return config


SECTIONS = ("data", "label", "features", "model", "train", "serving")


def from_dict(raw: dict[str, Any], where: str = "config") -> Config:
    """Builds and validates a Config from a nested dict (sections data, label, features,
    model, train)."""
    unknown = sorted(set(raw) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where}: unknown section(s) {', '.join(unknown)}; known: "
                          f"{', '.join(SECTIONS)}")
    label, features = None, ()
    if "features" in raw and "label" not in raw:
        # Overrides of a preset's features by name (data.schema, or a format's preset).
        try:
            features = tuple(parse_feature(f, i)
                             for i, f in enumerate(raw["features"]))
        except (SchemaError, TypeError, AttributeError) as err:
            raise ConfigError(f"{where}: {err}") from None
    elif "label" in raw:
        if "features" not in raw:
            raise ConfigError(f"{where}: a declared schema needs both [label] and "
                              "[[features]]; features is missing")
        try:
            schema = parse_schema(raw["label"], raw["features"])
        except SchemaError as err:
            raise ConfigError(f"{where}: {err}") from None
        if "task" in raw.get("model", {}) and raw["model"]["task"] != schema.label.task:
            raise ConfigError(f"{where}: model.task {raw['model']['task']!r} contradicts "
                              f"label.task {schema.label.task!r}; set the task in [label]")
        label, features = schema.label, schema.features
        raw = {**raw, "model": {**raw.get("model", {}), "task": label.task}}
    return validate(Config(
        data=_section(DataConfig, raw.get("data", {}), f"{where}: data"),
        model=_section(ModelConfig, raw.get("model", {}), f"{where}: model"),
        train=_section(TrainConfig, raw.get("train", {}), f"{where}: train"),
        label=label, features=features,
        serving=_section(ServingConfig, raw.get("serving", {}), f"{where}: serving"),
    ))


def same_config(recorded: Any, config: Config) -> bool:
    """Whether a recorded config (an export manifest's, a pair record's) is ``config``. Keys
    the recording lacks take their defaults, so exports made before a setting existed still
    match configs that leave it at its default (which is what they trained with)."""
    try:
        ours = config.to_dict()
        theirs = from_dict(recorded).to_dict()
    except (ConfigError, TypeError, AttributeError):
        return False
    ours.pop("serving", None)  # a name on the server is not part of what was trained
    theirs.pop("serving", None)
    return ours == theirs


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"section.key=value"`` (value in TOML syntax, or a bare string) -> parts; the key
    may name a sub-table's key (``train.embeddings.optimizer=adagrad``)."""
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
    if "label" in raw and not any(parse_override(t)[:2] == ("model", "task") for t in overrides):
        raw["model"].pop("task")  # follows label.task, which an override may change
    for text in overrides:
        section, name, value = parse_override(text)
        if section == "serving":
            raw.setdefault("serving", {})  # to_dict leaves an unset [serving] out
        if section not in raw:
            raise ConfigError(f"override {text!r}: unknown section {section!r}; known: "
                              f"{', '.join(raw)}")
        if not isinstance(raw[section], dict):
            raise ConfigError(f"override {text!r}: [[{section}]] entries cannot be set with "
                              "--set; edit the config file")
        table, *inner = name.split(".")  # train.embeddings.optimizer=... sets a sub-table
        target = raw[section]
        if inner:
            if not isinstance(target.get(table), dict):
                raise ConfigError(f"override {text!r}: {section}.{table} is not a table")
            target, name = target[table], ".".join(inner)
        target[name] = value
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
