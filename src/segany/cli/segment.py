"""``segany segment``: masks for clicks, a box and/or a phrase on one image, written as PNG, scores as JSON."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import add_model_args, load_model
from .text_options import add_text_args, check_text_args, load_text_encoder_from_args


def _point(text: str) -> tuple[float, float, int]:
    parts = text.split(",")
    try:
        if len(parts) == 2:
            return float(parts[0]), float(parts[1]), 1
        if len(parts) == 3 and parts[2].strip() in ("0", "1"):
            return float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(
        f"expected X,Y or X,Y,LABEL with LABEL 1 (foreground) or 0 (background), got {text!r}"
    )


def _box(text: str) -> tuple[float, float, float, float]:
    parts = text.split(",")
    try:
        if len(parts) == 4:
            x0, y0, x1, y1 = (float(p) for p in parts)
            if x1 >= x0 and y1 >= y0:
                return x0, y0, x1, y1
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"expected X0,Y0,X1,Y1 with X0 <= X1 and Y0 <= Y1, got {text!r}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "segment",
        help="segment an object from clicks, a box and/or a phrase",
        description=(
            "Segment one object of IMAGE from point clicks, a box and/or a phrase (--text, with a checkpoint "
            "trained for text prompts); prints scores as JSON."
        ),
    )
    parser.add_argument("image", help="image file (JPEG, PNG, ...)")
    parser.add_argument(
        "--point",
        type=_point,
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="a click in pixels; LABEL 1 foreground (default) or 0 background; repeat for more",
    )
    parser.add_argument("--box", type=_box, default=None, metavar="X0,Y0,X1,Y1", help="a box in pixels")
    add_model_args(parser)
    add_text_args(parser, "a phrase naming the object (e.g. 'red triangle'), alone or with --point/--box")
    parser.add_argument("--out", default="mask.png", help="mask PNG to write (default: mask.png)")
    parser.add_argument(
        "--overlay", default=None, help="also write the image with the mask, clicks and box drawn"
    )
    parser.add_argument(
        "--multimask",
        action="store_true",
        help="write all 3 candidate masks (OUT_0.png, OUT_1.png, OUT_2.png) instead of the best one",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..errors import PromptError, SegAnyError
    from ..images import load_image
    from ..prompts import check_inside, is_ambiguous

    check_text_args(args)
    image = load_image(args.image)
    height, width = image.shape[:2]
    if not args.point and args.box is None and args.text is None:
        raise PromptError("Give at least one --point X,Y, a --box X0,Y0,X1,Y1 or a --text PHRASE.")
    check_inside([(x, y) for x, y, _ in args.point], args.box, width, height)

    from ..predictor import SamPredictor

    model = load_model(args)
    text_encoder = None
    if args.text is not None:
        from ..text.load import check_pair

        text_encoder = load_text_encoder_from_args(args, model.device)
        check_pair(model, text_encoder)  # before the image embedding, the costly part
    predictor = SamPredictor(model, text_encoder=text_encoder)
    predictor.set_image(image)
    coords = np.array([[x, y] for x, y, _ in args.point], dtype=np.float64) if args.point else None
    labels = np.array([label for _, _, label in args.point], dtype=np.int64) if args.point else None
    box = np.array(args.box, dtype=np.float64) if args.box is not None else None
    # An ambiguous prompt gets the 3 candidates and the best is kept, as the paper does.
    ambiguous = is_ambiguous(len(args.point), box is not None, args.text is not None)
    masks, scores, _ = predictor.predict(
        coords, labels, box, multimask_output=args.multimask or ambiguous, text=args.text
    )
    best = int(np.argmax(scores))

    out = Path(args.out)
    if args.multimask:
        paths = [out.with_name(f"{out.stem}_{i}{out.suffix or '.png'}") for i in range(len(masks))]
        written = list(range(len(masks)))
    else:
        paths, written = [out], [best]
    try:
        for path, index in zip(paths, written, strict=True):
            _write_png(path, masks[index].astype(np.uint8) * 255)
        if args.overlay:
            from ..visualize import draw_overlay

            _write_png(Path(args.overlay), draw_overlay(image, masks[best], coords, labels, box))
    except OSError as exc:
        raise SegAnyError(f"Cannot write output ({exc.strerror}: {exc.filename}).") from exc

    report = {
        "image": str(args.image),
        "size": [width, height],
        **({"text": args.text} if args.text is not None else {}),
        "best": written.index(best) if best in written else 0,
        "masks": [
            {"path": str(path), "score": round(float(scores[i]), 6), "area": int(masks[i].sum())}
            for path, i in zip(paths, written, strict=True)
        ],
        "scores": [round(float(s), 6) for s in scores],
    }
    if args.overlay:
        report["overlay"] = str(args.overlay)
    print(json.dumps(report))
    return 0


def _write_png(path: Path, array: object) -> None:
    """Write through a temporary file so an interrupted run never leaves a truncated picture."""
    from PIL import Image

    from ..files import atomic_write

    atomic_write(path, lambda tmp: Image.fromarray(array).save(tmp, format="PNG"))  # type: ignore[arg-type]
