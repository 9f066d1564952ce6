"""Copy a trained run's weights into the package as the bundled default model (float16, config inside).

    python scripts/bundle_default_model.py runs/bundled_v2/model.safetensors \
        --zoom-context 3 --generator-defaults pred_iou_thresh=0.7,stability_score_thresh=0.8

Several weights files of one architecture give their mean (a model soup, Wortsman et al., 2022): the
bundled model v2 is the mean of four training stages of one trajectory (stages 11, 12, 16 and 17; see its
model card).

Float16 halves the file (the package ships at most 25 MB); `build_sam` loads it back into float32.
``--zoom-context`` and ``--generator-defaults`` set how the model is used (``SamConfig.zoom_context``,
``SamConfig.generator_defaults``: chosen by measurement, see scripts/calibrate_generator.py); they travel
in the file's metadata, so every caller gets them.
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

from segany import Sam, build_sam, save_checkpoint
from segany.errors import SegAnyError
from segany.variants import BUNDLED_WEIGHTS

MAX_BYTES = 25 * 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "weights", type=Path, nargs="+", help="a run's model.safetensors (or last.pt); several: their mean"
    )
    parser.add_argument("--zoom-context", type=float, default=None, help="SamConfig.zoom_context")
    parser.add_argument(
        "--generator-defaults", default=None, help="NAME=VALUE,...: SamConfig.generator_defaults"
    )
    parser.add_argument(
        "--out", type=Path, default=BUNDLED_WEIGHTS, help="where to write it (default: the bundled file)"
    )
    args = parser.parse_args()
    try:
        model = averaged(args.weights)
    except SegAnyError as error:
        raise SystemExit(str(error)) from None
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


def averaged(paths: list[Path]) -> Sam:
    """The model of ``paths[0]`` with every floating-point tensor the mean over all ``paths``.

    Integer buffers (batch-norm step counts) are the first file's. Refuses files of another architecture.
    """
    model = build_sam(checkpoint=paths[0], device="cpu")
    if len(paths) == 1:
        return model
    state = {
        name: tensor.double() if tensor.is_floating_point() else tensor
        for name, tensor in model.state_dict().items()
    }
    for path in paths[1:]:
        other = build_sam(checkpoint=path, device="cpu")
        if other.config != model.config:
            raise SystemExit(
                f"{path} is not the architecture of {paths[0]}; only weights of one model average."
            )
        for name, tensor in other.state_dict().items():
            if tensor.is_floating_point():
                state[name] += tensor.double()
    model.load_state_dict(
        {
            name: (tensor / len(paths)).float() if tensor.is_floating_point() else tensor
            for name, tensor in state.items()
        }
    )
    return model


if __name__ == "__main__":
    main()
