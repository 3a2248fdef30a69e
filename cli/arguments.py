"""Argument helpers shared by the subcommands: value checks, and flags generated from a
settings dataclass (its fields, defaults and field docstrings)."""

from __future__ import annotations

import argparse
import typing
from dataclasses import MISSING, Field
from pathlib import Path
from typing import Any


def positive(kind: type) -> Any:
    """An argparse ``type`` that parses ``kind`` and refuses values <= 0."""
    def parse(text: str) -> object:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{text}: must be > 0")
        return value
    parse.__name__ = kind.__name__
    return parse


def _base_type(annotation: Any) -> type:
    """``int`` of ``int | None``; the type itself otherwise."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if args else annotation


def _shown(value: Any) -> str:
    """A default as the help text shows it (byte sizes in MiB)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 1 << 20 \
            and value % (1 << 20) == 0:
        return f"{value >> 20} MiB"
    if isinstance(value, int) and not isinstance(value, bool) and value >= 10_000:
        return f"{value:_}".replace("_", ",")
    return str(value)


def flag_name(name: str) -> str:
    """The flag of a settings field: ``max_queue`` -> ``--max-queue``."""
    return "--" + name.replace("_", "-")


def add_settings_flags(parser: argparse.ArgumentParser, settings: type, flags: list[Field],
                       help_texts: dict[str, str]) -> None:
    """One flag per field of ``settings`` in ``flags``, typed by its annotation, defaulting
    to its default, with the field's docstring as help. A bool field that defaults to true
    becomes ``--no-NAME``."""
    hints = typing.get_type_hints(settings)
    for f in flags:
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        text = help_texts.get(f.name, "")
        if isinstance(default, bool):
            if default:
                parser.add_argument("--no-" + f.name.replace("_", "-"), dest=f.name,
                                    action="store_false", default=True, help=text)
            else:
                parser.add_argument(flag_name(f.name), dest=f.name, action="store_true",
                                    default=False, help=text)
            continue
        kind = _base_type(hints[f.name])
        shown = f" (default {_shown(default)})" if default is not None \
            and "(default" not in text else ""
        parser.add_argument(flag_name(f.name), dest=f.name, type=kind, default=default,
                            metavar=f.name.upper() if kind is not Path else "PATH",
                            help=text + shown)


def settings_from(args: argparse.Namespace, settings: type, flags: list[Field]) -> Any:
    """The settings dataclass with each flag's parsed value."""
    return settings(**{f.name: getattr(args, f.name) for f in flags})


def non_negative(text: str) -> float:
    """An argparse type: a number >= 0."""
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
    return value


def add_pacing(parser: argparse.ArgumentParser, zero_rate: str) -> None:
    """``--rate`` (requests per second, default 5; ``zero_rate`` says what 0 means) and
    ``--duration`` (seconds, default 0: until stopped), for commands that send requests."""
    parser.add_argument("--rate", type=non_negative, default=5.0,
                        help=f"requests per second (default 5; 0: {zero_rate})")
    parser.add_argument("--duration", type=non_negative, default=0.0,
                        help="seconds to run (default 0: until stopped)")
