"""``segany eval-text``: text-prompt mIoU of a model on labelled synthetic scenes (paper section 7.5)."""

from __future__ import annotations

import argparse

from ..training.text_config import TextEvalConfig
from .common import add_model_args, load_model
from .config_flags import add_config_flags, config_from_args
from .text_options import DEFAULT_CLIP_MODEL


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval-text",
        help="measure text-prompt mIoU on labelled synthetic scenes",
        description=(
            "Prompt a model trained with text prompts by phrases ('red triangle') that name one object of "
            "each scene, and report the mean IoU, with box, point and wrong-phrase figures for scale."
        ),
    )
    parser.add_argument(
        "data",
        metavar="DATA",
        help="labelled scenes: text_scenes:seed=S,count=N,size=PX (use an unseen seed)",
    )
    add_model_args(parser)
    parser.add_argument(
        "--text-encoder",
        required=True,
        metavar="FILE",
        help="the text-image encoder the model was trained with",
    )
    parser.add_argument(
        "--clip-model",
        default=DEFAULT_CLIP_MODEL,
        metavar="NAME",
        help=f"open_clip architecture of CLIP weights given as --text-encoder (default: {DEFAULT_CLIP_MODEL})",
    )
    parser.add_argument("--output", default=None, metavar="FILE.json", help="also write the results as JSON")
    add_config_flags(parser, TextEvalConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import DatasetError, SegAnyError
    from ..formats.base import atomic_write_json
    from ..text.load import check_pair, load_text_encoder
    from ..training.datasets import open_dataset
    from ..training.text_evaluate import evaluate_text, format_text_table
    from ..training.text_scenes import TextScenes

    try:
        config = config_from_args(TextEvalConfig, args)
    except ValueError as exc:
        raise SegAnyError(f"Bad eval-text option: {exc}.") from exc
    scenes = open_dataset(args.data)
    if not isinstance(scenes, TextScenes):
        raise DatasetError(
            f"eval-text needs labelled scenes such as text_scenes:seed=99,count=100, got {args.data!r}."
        )
    model = load_model(args)
    encoder = load_text_encoder(args.text_encoder, args.clip_model, device=model.device)
    check_pair(model, encoder)
    result = evaluate_text(model, encoder, scenes, config)
    if args.output:
        try:
            atomic_write_json(Path(args.output), {"dataset": args.data, **result.to_dict()})
        except OSError as exc:
            raise SegAnyError(f"Cannot write --output ({exc.strerror}: {exc.filename}).") from exc
    print(format_text_table(result))
    return 0
