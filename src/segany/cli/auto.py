"""``segany auto``: segment everything in images and write the masks as SA-1B, COCO, PNG or YOLO.

With ``--text PHRASE`` only the ``--top-k`` masks that best match the phrase are written (ranked by a
text-image encoder, :func:`segany.text.rank_by_text`), best first; their scores go to
``OUT/text_scores.json`` (the mask formats have no field for them)::

    {"text": PHRASE, "images": {IMAGE_NAME: [text_score of mask 0, of mask 1, ...]}}
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..automatic.options import GeneratorConfig
from ..images import DEFAULT_MAX_PIXELS, IMAGE_SUFFIXES
from .common import add_model_args, load_model, make_out_dir
from .config_flags import add_config_flags, config_from_args
from .text_options import add_text_args, check_text_args, load_text_encoder_from_args

FORMATS = ("sa1b", "coco", "png", "yolo")
TEXT_SCORES_FILE = "text_scores.json"


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


def find_images(inputs: list[str]) -> list[tuple[Path, str]]:
    """``(path, name)`` for every image: files as given, folders searched recursively.

    ``name`` is the path relative to its folder (the file name for a file input); outputs are named after
    it. Sorted, so image ids stay the same when a run is resumed.
    """
    from ..errors import ImageError

    found: dict[str, Path] = {}
    for text in inputs:
        root = Path(text)
        if root.is_dir():
            for path in sorted(root.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    found.setdefault(path.relative_to(root).as_posix(), path)
        elif root.exists():
            found.setdefault(root.name, root)
        else:
            raise ImageError(f"Input not found: {root}.")
    return [(found[name], name) for name in sorted(found)]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..automatic import SamAutomaticMaskGenerator
    from ..errors import SegAnyError
    from ..formats import get_writer
    from ..formats.base import atomic_write_json
    from ..images import load_image
    from ..progress import progress_bar
    from ..runtime import reuse_freed_memory

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
    images = find_images(args.inputs)
    if not images:
        raise SegAnyError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found in {' '.join(args.inputs)}.")
    out_dir = make_out_dir(args.out)
    writer = get_writer(args.format)
    todo = [
        (i, path, name)
        for i, (path, name) in enumerate(images)
        if args.overwrite or not writer.done_path(out_dir, name).exists()
    ]
    skipped = len(images) - len(todo)
    text_scores = _open_text_scores(out_dir, args) if args.text is not None else None
    generator = SamAutomaticMaskGenerator.from_config(load_model(args), config) if todo else None
    reuse_freed_memory()  # this process is ours (see segany.runtime.reuse_freed_memory)
    text_encoder = None
    if args.text is not None and generator is not None:
        from ..text.rerank import rank_by_text

        text_encoder = load_text_encoder_from_args(args, generator.predictor.device)

    failed, masks_written = [], 0
    for image_id, path, name in progress_bar(todo, desc="images", unit="img"):
        try:
            image = load_image(path, max_pixels=args.max_pixels)
        except SegAnyError as exc:
            failed.append(name)
            tqdm.write(f"segany: skipped {name}: {exc}", file=sys.stderr)
            continue
        records = generator.generate(image)
        if text_encoder is not None:
            records = rank_by_text(image, records, args.text, text_encoder)[:top_k]
        height, width = image.shape[:2]
        if args.overlay:
            _write_overlay(out_dir / "overlays" / (Path(name).with_suffix(".png")), image, records)
        if text_scores is not None:
            # Before the masks: the writer's done path, written last, means the image is complete.
            text_scores["images"][name] = [round(r["text_score"], 6) for r in records]
            atomic_write_json(out_dir / TEXT_SCORES_FILE, text_scores)
        writer.write(out_dir, name, image_id, height, width, records)
        masks_written += len(records)
    writer.finish(out_dir)
    print(
        f"segany auto: {len(images)} images: {len(todo) - len(failed)} written ({masks_written} masks), "
        f"{skipped} already done, {len(failed)} failed; output in {out_dir}",
        file=sys.stderr,
    )
    return 1 if failed else 0


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


def _open_text_scores(out_dir: Path, args: argparse.Namespace) -> dict:
    """The text scores already in ``out_dir`` (a resumed run), refused when they are for another phrase."""
    import json

    from ..errors import SegAnyError

    path = out_dir / TEXT_SCORES_FILE
    if args.overwrite or not path.exists():
        return {"text": args.text, "images": {}}
    try:
        scores = json.loads(path.read_text(encoding="utf-8"))
        previous = scores["text"]
        dict(scores["images"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SegAnyError(f"{path} is unreadable; delete it or pass --overwrite to start over.") from exc
    if previous != args.text:
        raise SegAnyError(
            f"{out_dir} holds masks chosen for --text {previous!r}; pass --overwrite or another --out."
        )
    return scores


def _write_overlay(path: Path, image, records: list[dict]) -> None:
    from PIL import Image

    from ..files import atomic_write
    from ..formats import rle
    from ..visualize import draw_masks

    picture = draw_masks(image, [rle.decode(r["segmentation"]) for r in records])
    atomic_write(path, lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"))
