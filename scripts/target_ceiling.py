"""How well a model's low-res mask grid can hold the true masks: hard cells against covered shares.

    python scripts/target_ceiling.py ../shared/data/tiny_coco/train2017 --min-area 100

Training supervises SAM's ``L x L`` low-res logits (``segany.training.samples``), and the predictor
upsamples them bilinearly to the photo (``Sam.postprocess_masks``), zooming in first on a small object
as the model's ``zoom_context`` says (``segany.zoom``). This stores each true mask on that grid in the
frame the predictor would use (the tight box's zoomed crop, else the whole photo) in two ways, upsamples
it as the predictor does and prints the mean IoU with the true mask:

* ``hard``: each cell foreground when at least half of it is covered (``soft_targets = false``), as
  logits of +-8;
* ``soft``: each cell's covered share as log-odds (``soft_targets = true``), clamped to +-8.

The first figure is what a model that learnt its hard training targets exactly would reach.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from segany import build_sam
from segany.training.datasets import open_dataset
from segany.training.eval_config import EvalConfig
from segany.training.eval_prompts import tight_boxes
from segany.training.evaluate import mask_ious, select_masks
from segany.training.samples import MaskFilter, prepare_sample
from segany.training.synthetic import Scene
from segany.zoom import crop_window

BOUND = 8.0  # logits of a certain cell


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", help="a dataset spec (COCO folder)")
    parser.add_argument("--min-area", type=int, default=100, help="skip masks smaller than this (pixels)")
    parser.add_argument(
        "--checkpoint", default=None, help="the model whose grid and zoom to use (default: bundled)"
    )
    args = parser.parse_args()
    model = build_sam(checkpoint=args.checkpoint, device="cpu")
    img_size, low_res = model.img_size, 4 * model.config.encoder.embedding_grid
    scenes = open_dataset(args.data)
    ious: dict[str, list[float]] = {"hard": [], "soft": []}
    keep_one = MaskFilter(max_masks=1, max_area_fraction=1.0)
    chosen = EvalConfig(min_area=args.min_area)  # the masks `segany eval --min-area` scores
    for index in range(len(scenes)):
        scene = scenes[index]
        height, width = scene.image.shape[:2]
        masks = select_masks(scene.masks, chosen)
        for mask, box in zip(masks, tight_boxes(masks), strict=True):
            window = None
            if model.zoom_context > 0:
                window = crop_window(torch.tensor(box), (height, width), model.zoom_context, img_size)
            left, top, side_w, side_h = window if window is not None else (0, 0, width, height)
            truth = mask[top : top + side_h, left : left + side_w]
            image = scene.image[top : top + side_h, left : left + side_w]
            sample = prepare_sample(
                Scene(image, truth[None]),
                img_size,
                low_res,
                keep_one,
                np.random.default_rng(0),
                coverage=True,
            )
            if not len(sample.targets):  # vanishes on the grid: neither way holds it
                for name in ious:
                    ious[name].append(0.0)
                continue
            assert sample.coverage is not None
            logits = {
                "hard": sample.targets.float() * 2 * BOUND - BOUND,
                "soft": torch.logit(sample.coverage, eps=1e-4).clamp(-BOUND, BOUND),
            }
            for name, grid in logits.items():
                held = model.postprocess_masks(grid[None], sample.input_size, truth.shape, threshold=0.0)
                ious[name].append(float(mask_ious(held[0].numpy(), truth[None])[0]))
    for name, values in ious.items():
        print(f"{name}: mean IoU {np.mean(values):.4f} over {len(values)} masks")


if __name__ == "__main__":
    main()
