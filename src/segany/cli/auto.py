"""``segany auto``: segment everything in images and write the masks as SA-1B, COCO, PNG or YOLO.

With ``--text PHRASE`` only the ``--top-k`` masks that best match the phrase are written (ranked by a
text-image encoder, :func:`segany.text.rank_by_text`), best first; their scores go to
``OUT/text_scores.json`` (the mask formats have no field for them)::

    {"text": PHRASE, "images": {IMAGE_NAME: [text_score of mask 0, of mask 1, ...]}}

It runs the data engine's labelling loop (:func:`segany.engine.labelling.label_images`) in this process,
so its folder is resumable as ``segany engine label``'s is: ``manifest.jsonl``, ``errors.jsonl`` and
``runs.jsonl`` beside the masks; a re-run skips the images done and retries those that failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..automatic.options import GeneratorConfig
from ..images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from .common import add_model_args, checked_device, make_out_dir, model_spec
from .config_flags import add_config_flags, config_from_args
from .text_options import add_text_args, check_text_args

FORMATS = ("sa1b", "coco", "png", "yolo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "auto",
        help="segment everything in images (automatic mask generation)",
        description="Generate masks for everything in each image and write them under --out.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files or folders (searched recursively)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--format", choices=FORMATS, default="sa1b", help="output format (default: sa1b)")
    add_model_args(parser)
    parser.add_argument(
        "--overlay", action="store_true", help="also save OUT/overlays/NAME.png with all masks"
    )
    parser.add_argument("--overwrite", action="store_true", help="redo images whose output already exists")
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="skip images with more pixels than this"
    )
    text = add_text_args(
        parser, "keep only the masks that best match this phrase (e.g. 'red triangle'), best first"
    )
    text.add_argument(
        "--top-k",
        type=int,
        default=None,
        metavar="K",
        help="with --text: how many masks to keep (default: 1)",
    )
    add_config_flags(parser, GeneratorConfig, exclude=("output_mode",))
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..engine.labelling import label_images
    from ..engine.pipeline import LabelJob, TextChoice
    from ..engine.sources import find_images, items_from
    from ..errors import SegAnyError

    check_text_args(args)
    top_k = _top_k(args)
    try:
        config = config_from_args(GeneratorConfig, args, output_mode="coco_rle")
    except ValueError as exc:
        raise SegAnyError(f"Bad generator option: {exc}") from exc
    if config.points_per_side is None:
        raise SegAnyError(
            "--points-per-side must be a number on the command line (point grids are a Python option)."
        )
    checked_device(args.device)  # this process runs the model: the device must be here
    images = find_images(args.inputs)
    if not images:
        raise SegAnyError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found in {' '.join(args.inputs)}.")
    out_dir = make_out_dir(args.out)
    text = None
    if args.text is not None:
        text = TextChoice(args.text, str(Path(args.text_encoder).resolve()), args.clip_model, top_k)
    job = LabelJob(
        out_dir=str(out_dir.resolve()),
        model=model_spec(args),
        generator=config,
        max_pixels=args.max_pixels,
        format=args.format,
        overlay=args.overlay,
        text=text,
    )
    items = items_from([(str(path.resolve()), name) for path, name in images])
    summary = label_images(items, job, overwrite=args.overwrite, progress=True)
    print(f"segany auto: {summary.text(out_dir)}", file=sys.stderr)
    return 1 if summary.failed else 0


def _top_k(args: argparse.Namespace) -> int:
    """``--top-k``, checked: only with ``--text``, at least 1; default 1."""
    from ..errors import PromptError

    if args.top_k is None:
        return 1
    if args.text is None:
        raise PromptError("--top-k picks masks by --text PHRASE; add the phrase or drop --top-k.")
    if args.top_k < 1:
        raise PromptError(f"--top-k must be at least 1, got {args.top_k}.")
    return args.top_k
