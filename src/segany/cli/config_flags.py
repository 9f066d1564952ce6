"""Command-line flags generated from a frozen config dataclass, so no option is retyped by hand."""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from typing import Any, TypeVar

T = TypeVar("T")


def _parser_for(annotation: Any, name: str) -> tuple[type, bool]:
    """The scalar type of a field and whether it accepts ``none``."""
    optional = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0]
    if annotation not in (int, float, str, bool):
        raise TypeError(f"config field {name} has unsupported type {annotation!r}")
    return annotation, optional


def _converter(kind: type, optional: bool, flag: str):
    def convert(text: str) -> Any:
        if optional and text.lower() == "none":
            return None
        try:
            return kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{flag} expects {kind.__name__}, got {text!r}") from None

    return convert


def add_config_flags(
    parser: argparse.ArgumentParser, config_cls: type, exclude: tuple[str, ...] = ()
) -> None:
    """Add ``--field-name`` for every field of ``config_cls`` (help and default from the field)."""
    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group(f"{config_cls.__name__} options")
    for field in dataclasses.fields(config_cls):
        if field.name in exclude:
            continue
        flag = "--" + field.name.replace("_", "-")
        kind, optional = _parser_for(hints[field.name], field.name)
        help_text = field.metadata.get("help", "")
        default = field.default
        if kind is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, default=default, help=help_text)
            continue
        shown = field.metadata.get(
            "default_text", f"{default:.4g}" if isinstance(default, float) else default
        )
        group.add_argument(
            flag,
            dest=field.name,
            type=_converter(kind, optional, flag),
            default=default,
            metavar=kind.__name__.upper(),
            help=f"{help_text} (default: {shown})",
        )


def config_from_args(config_cls: type[T], args: argparse.Namespace, **overrides: Any) -> T:
    """Build ``config_cls`` from parsed flags (fields absent from ``args`` keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(config_cls) if hasattr(args, f.name)}
    values.update(overrides)
    return config_cls(**values)
