"""Choose a model's automatic-generator thresholds (predicted IoU, stability) on training photos.

    python scripts/calibrate_generator.py runs/bundled_v2/model.safetensors ../shared/data/coco_extra/train

SAM's defaults (0.88, 0.95) suit SAM's calibration; a small model's predicted IoU lives on its own scale.
For each pair of thresholds this runs the generator on the first ``--images`` photos of a dataset the
model trained on (never the evaluation set) and prints the recall of instances >= 32 x 32 px at IoU 0.5
and the masks per photo, as ``segany eval --automatic`` measures them. Pass the chosen pair to
``scripts/bundle_default_model.py --generator-defaults``.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

from segany import build_sam
from segany.automatic import SamAutomaticMaskGenerator
from segany.training.datasets import open_dataset
from segany.training.evaluate import automatic_matches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="the model's weights (.safetensors)")
    parser.add_argument("data", help="a training dataset spec (COCO folder)")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--iou", default="0.5,0.6,0.7,0.8", help="predicted-IoU thresholds to try")
    parser.add_argument("--stability", default="0.7,0.8,0.9", help="stability thresholds to try")
    args = parser.parse_args()
    model = build_sam(checkpoint=args.weights, device="cpu")
    scenes = open_dataset(args.data)
    count = min(args.images, len(scenes))
    pairs = list(itertools.product(_floats(args.iou), _floats(args.stability)))
    totals = {pair: np.zeros(3, dtype=np.int64) for pair in pairs}
    for index in range(count):
        scene = scenes[index]
        for pair in pairs:
            generator = SamAutomaticMaskGenerator(
                model, pred_iou_thresh=pair[0], stability_score_thresh=pair[1]
            )
            totals[pair] += automatic_matches(generator, scene.image, np.asarray(scene.masks, dtype=bool))
        print(f"image {index + 1}/{count}", flush=True)
    print("pred_iou_thresh  stability_score_thresh  recall  masks/photo")
    for pair, (instances, matched, generated) in totals.items():
        print(
            f"{pair[0]:15.2f}  {pair[1]:22.2f}  {matched / max(instances, 1):6.3f}  {generated / count:11.1f}"
        )


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


if __name__ == "__main__":
    main()
