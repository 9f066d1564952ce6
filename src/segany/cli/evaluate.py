"""``segany eval``: box and click mIoU of a model on a dataset, with the box-as-mask and GrabCut floors."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..training.eval_config import EvalConfig
from .common import add_model_args, load_model
from .config_flags import add_config_flags, config_from_args

if TYPE_CHECKING:
    from ..training.evaluate import EvalResult


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "eval",
        help="measure box and click mIoU, NoC and automatic recall on a dataset",
        description=(
            "Prompt the model with each ground-truth mask's box and with simulated clicks (RITM's protocol), "
            "and report the mean IoU, the clicks needed to reach IoU 0.85 and 0.90 (NoC), and with "
            "--automatic the automatic generator's recall; also the box-as-mask, ellipse and GrabCut floors."
        ),
    )
    parser.add_argument(
        "data",
        metavar="DATA",
        help=(
            "dataset: a COCO annotation JSON, a COCO image folder, an SA-1B folder, or "
            "synthetic:seed=S,count=N,size=PX"
        ),
    )
    add_model_args(parser)
    parser.add_argument("--output", default=None, metavar="FILE.json", help="also write the results as JSON")
    add_config_flags(parser, EvalConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import SegAnyError
    from ..formats.base import atomic_write_json
    from ..predictor import SamPredictor
    from ..training.datasets import open_dataset
    from ..training.evaluate import evaluate

    try:
        config = config_from_args(EvalConfig, args)
    except ValueError as exc:
        raise SegAnyError(f"Bad eval option: {exc}.") from exc
    output = Path(args.output) if args.output else None
    if output is not None:
        # Fail before a long run, not after it.
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SegAnyError(
                f"Cannot create the folder of --output ({exc.strerror}: {exc.filename})."
            ) from exc

    scenes = open_dataset(args.data)
    model = load_model(args)
    result = evaluate(SamPredictor(model), scenes, config, progress=True)
    report = {"dataset": args.data, **result.to_dict(), "model": _model_info(model, args)}
    if output is not None:
        try:
            atomic_write_json(output, report)
        except OSError as exc:
            raise SegAnyError(f"Cannot write --output ({exc.strerror}: {exc.filename}).") from exc
    print(format_table(result))
    return 0


def format_table(result: EvalResult) -> str:
    """The results as a few aligned lines: one row per method, columns box mIoU and mIoU after each click."""
    clicks = len(result.sam_click_miou or ())
    header = ["", "box", *[f"{k} click{'s' if k > 1 else ''}" for k in range(1, clicks + 1)]]
    rows = [header]
    if result.sam_box_miou is not None:
        rows.append(["SAM", result.sam_box_miou, *(result.sam_click_miou or ())])
    if result.box_as_mask_miou is not None:
        rows.append(["box as mask", result.box_as_mask_miou])
    if result.ellipse_miou is not None:
        rows.append(["ellipse", result.ellipse_miou])
    if result.grabcut_miou is not None:
        rows.append(["GrabCut", result.grabcut_miou])
    lines = [
        f"mIoU over {result.masks} masks of {result.images} images ({result.seconds:.1f} s)",
        *(_row(row, len(header)) for row in rows),
    ]
    if result.sam_box_miou_by_size:
        sizes = ", ".join(
            f"{name} {miou:.3f} ({count})" for name, (miou, count) in result.sam_box_miou_by_size.items()
        )
        lines.append(f"SAM box mIoU by size (masks): {sizes}")
    if result.sam_click_oracle_miou is not None and result.sam_click_miou:
        lines.append(
            f"SAM 1 click: {result.sam_click_miou[0]:.3f} with the candidate it rates best, "
            f"{result.sam_click_oracle_miou:.3f} with the best of its candidates (oracle)"
        )
    if result.sam_noc is not None:
        cap = result.config.noc_clicks
        lines.append(
            f"SAM NoC@85 {result.sam_noc[0]:.2f}, NoC@90 {result.sam_noc[1]:.2f} (at most {cap} clicks)"
        )
    if result.automatic_recall is not None:
        lines.append(
            f"automatic generator: recall {result.automatic_recall:.3f} of {result.automatic_instances} "
            f"instances >= 32x32 px (IoU >= 0.5), {result.automatic_masks_per_image:.1f} masks per image"
        )
    elif result.automatic_masks_per_image is not None:
        lines.append(
            f"automatic generator: no instance >= 32x32 px to recall, "
            f"{result.automatic_masks_per_image:.1f} masks per image"
        )
    return "\n".join(lines)


def _row(cells: list[Any], width: int) -> str:
    texts = [c if isinstance(c, str) else f"{c:.3f}" for c in cells] + ["-"] * (width - len(cells))
    return f"{texts[0]:<12}" + "".join(f"{text:>10}" for text in texts[1:])


def _model_info(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    from ..variants import variant_of

    return {
        "variant": variant_of(model.config) or "custom",
        "checkpoint": args.checkpoint,
        "img_size": model.img_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": str(model.device),
        "precision": args.precision,
    }
