"""Copy a trained run's weights into the package as the bundled default model (float16, config inside).

    python scripts/bundle_default_model.py runs/bundled_v2/model.safetensors \
        --zoom-context 3 --generator-defaults pred_iou_thresh=0.7,stability_score_thresh=0.8

Float16 halves the file (the package ships at most 25 MB); `build_sam` loads it back into float32.
``--zoom-context`` and ``--generator-defaults`` set how the model is used (``SamConfig.zoom_context``,
``SamConfig.generator_defaults``: chosen by measurement, see scripts/calibrate_generator.py); they travel
in the file's metadata, so every caller gets them.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from segany import build_sam, save_checkpoint
from segany.variants import BUNDLED_WEIGHTS

MAX_BYTES = 25 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", type=Path, help="a run's model.safetensors (or last.pt)")
    parser.add_argument("--zoom-context", type=float, default=None, help="SamConfig.zoom_context")
    parser.add_argument(
        "--generator-defaults", default=None, help="NAME=VALUE,...: SamConfig.generator_defaults"
    )
    parser.add_argument(
        "--out", type=Path, default=BUNDLED_WEIGHTS, help="where to write it (default: the bundled file)"
    )
    args = parser.parse_args()
    model = build_sam(checkpoint=args.weights, device="cpu")
    assert model.config is not None
    changes: dict[str, object] = {}
    if args.zoom_context is not None:
        changes["zoom_context"] = args.zoom_context
    if args.generator_defaults is not None:
        pairs = [item.split("=", 1) for item in args.generator_defaults.split(",") if item.strip()]
        changes["generator_defaults"] = tuple((name.strip(), float(value)) for name, value in pairs)
    model.config = model.config.replace(**changes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(copy.deepcopy(model).half(), args.out, config=model.config)
    size = args.out.stat().st_size
    params = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out} ({size / 1e6:.2f} MB, {params / 1e6:.2f} M parameters)")
    if size > MAX_BYTES:
        raise SystemExit(f"{args.out} is {size} bytes, over the {MAX_BYTES}-byte budget.")


if __name__ == "__main__":
    main()
