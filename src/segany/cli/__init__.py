"""``segany`` command line: one subcommand per module, heavy imports only when a command runs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import annotate, auto, download, engine, eval_text, evaluate, export_onnx, segment, text_encoder, train

_COMMANDS = (segment, auto, evaluate, eval_text, export_onnx, download, train, text_encoder, annotate, engine)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segany", description="Segment Anything: promptable image segmentation."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in _COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``segany`` script. Returns the exit status (0 ok, 1 bad input, 2 usage)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # say it with the subcommand's usage, which lists the flags it does take
        subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        subcommands.choices[args.command].error(f"unrecognized arguments: {' '.join(extra)}")
    from ..errors import SegAnyError

    try:
        return int(args.run(args) or 0)
    except SegAnyError as exc:
        print(f"segany: error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file system refusal no command foresaw: still one sentence
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"segany: error: {exc.strerror or exc}{where}.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("segany: interrupted", file=sys.stderr)
        return 130


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"segany {version('segany')}"
    except PackageNotFoundError:
        return "segany (not installed)"
