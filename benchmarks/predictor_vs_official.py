"""segany's SamPredictor against the official one, side by side: agreement and speed in one run.

Same random weights (every tensor perturbed, see tests/support.py), same photo. Prints, per prompt case,
the max abs difference of scores, low-res logits and mask logits and the fraction of mask pixels that
differ; then encoder time (set_image) and per-click time (predict) of both and the ratios.

    python benchmarks/predictor_vs_official.py --model vit_b --repeats 2 --clicks 20
    python benchmarks/predictor_vs_official.py --model vit_b --size 1200x800 --bf16 --onnx   # ~1 megapixel

For ``--model vit_t`` the "official" side is MobileSAM (the ``mobile_sam`` package of mobilesam-mirror).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from measure import best_time
from segany import SamPredictor
from segany.config import TinyViTConfig
from segany.variants import VARIANTS
from support import mobilesam_twin_models, sample_image, twin_models


def _cases(image: np.ndarray) -> dict[str, dict]:
    h, w = image.shape[:2]
    box = np.array([0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h])
    two = np.array([[0.45 * w, 0.5 * h], [0.1 * w, 0.1 * h]])
    boxes = np.array([[0.1 * w, 0.1 * h, 0.5 * w, 0.6 * h], [0.4 * w, 0.3 * h, 0.9 * w, 0.9 * h]])
    return {
        "1 point, multimask": dict(point_coords=two[:1], point_labels=np.array([1])),
        "2 points": dict(point_coords=two, point_labels=np.array([1, 0]), multimask_output=False),
        "box": dict(box=box, multimask_output=False),
        "points+box": dict(point_coords=two, point_labels=np.array([1, 0]), box=box, multimask_output=False),
        "2 boxes": dict(box=boxes, multimask_output=False),
    }


def _print_agreement(ours: SamPredictor, official, image: np.ndarray) -> None:
    ours.set_image(image)
    official.set_image(image)
    emb = (ours.get_image_embedding() - official.get_image_embedding()).abs().max().item()
    print(f"image embedding max |diff| {emb:.2e}")
    print(f"{'case':22s} {'scores':>9s} {'low-res':>9s} {'logits':>9s} {'mask px':>9s}")
    cases = _cases(image)
    _, scores, low = official.predict(**cases["1 point, multimask"])
    cases["mask input + points"] = dict(
        point_coords=cases["2 points"]["point_coords"],
        point_labels=np.array([1, 0]),
        mask_input=low[np.argmax(scores)][None],
        multimask_output=False,
    )
    for name, kwargs in cases.items():
        a = ours.predict(**kwargs, return_logits=True)
        if name == "2 boxes":
            boxes = official.transform.apply_boxes_torch(
                torch.as_tensor(kwargs["box"], dtype=torch.float), image.shape[:2]
            )
            b = tuple(
                t.numpy()
                for t in official.predict_torch(
                    None, None, boxes=boxes, multimask_output=False, return_logits=True
                )
            )
        else:
            b = official.predict(**kwargs, return_logits=True)
        flipped = ((a[0] > 0) != (b[0] > 0)).mean()
        diffs = [np.abs(x - y).max() for x, y in zip(a, b, strict=True)]
        print(f"{name:22s} {diffs[1]:9.2e} {diffs[2]:9.2e} {diffs[0]:9.2e} {flipped:9.2e}")


def _print_agreement_with_fp32(
    name: str, exact: SamPredictor, fast: SamPredictor, image: np.ndarray, clicks: list
) -> None:
    """Another path against segany fp32, as a user sees it: mask IoU and score differences per click."""
    exact.set_image(image)
    fast.set_image(image)
    ious, diffs = [], []
    for coords, labels in clicks:
        a = exact.predict(coords, labels, multimask_output=False)
        b = fast.predict(coords, labels, multimask_output=False)
        ious.append((a[0] & b[0]).sum() / max((a[0] | b[0]).sum(), 1))
        diffs.append(abs(float(a[1][0] - b[1][0])))
    print(
        f"{name} vs fp32 over {len(clicks)} clicks: mask IoU mean {np.mean(ious):.4f} min {np.min(ious):.4f}, max |score diff| {max(diffs):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument(
        "--repeats", type=int, default=2, help="encoder runs per implementation (best is kept)"
    )
    parser.add_argument("--clicks", type=int, default=20, help="predict calls timed per implementation")
    parser.add_argument(
        "--bf16", action="store_true", help="also time segany in bfloat16 and compare it with fp32"
    )
    parser.add_argument(
        "--onnx", action="store_true", help="also time the ONNX Runtime backends (fp32 and int8)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument(
        "--size",
        default=None,
        help="WxH: resize the photo to this size first (e.g. 1200x800, about 1 megapixel; default: as is)",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = VARIANTS[args.model]
    if isinstance(config.encoder, TinyViTConfig):
        from mobile_sam import SamPredictor as OfficialPredictor

        ours_model, official_model = mobilesam_twin_models(config, seed=0)
    else:
        from segment_anything import SamPredictor as OfficialPredictor

        ours_model, official_model = twin_models(config, seed=0)
    image = sample_image()
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    ours, official = SamPredictor(ours_model), OfficialPredictor(official_model)
    rng = np.random.default_rng(0)
    h, w = image.shape[:2]
    clicks = [(np.array([[rng.uniform(0, w), rng.uniform(0, h)]]), np.array([1])) for _ in range(args.clicks)]

    _print_agreement(ours, official, image)

    rows = []
    runs = [("segany", ours), ("official", official)]
    extra = []
    if args.bf16:
        extra.append(("segany bf16", SamPredictor(ours_model, dtype="bfloat16")))
    if args.onnx:
        extra.append(("segany ORT", SamPredictor(ours_model, backend="onnxruntime")))
        extra.append(("segany ORT int8", SamPredictor(ours_model, backend="onnxruntime-int8")))
    runs[1:1] = extra
    for name, predictor in runs:
        predictor.set_image(image)  # warm-up (allocator, thread pool)
        encoder = best_time(lambda p=predictor: p.set_image(image), args.repeats)
        predictor.predict(*clicks[0])
        start = time.perf_counter()
        for coords, labels in clicks:
            predictor.predict(coords, labels)
        click = (time.perf_counter() - start) / len(clicks)
        rows.append((name, encoder, click))

    reference = OfficialPredictor.__module__.split(".")[0]
    print(
        f"model {args.model} (official = {reference}), image {w}x{h}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}"
    )
    print(f"{'':10s} {'encoder s':>10s} {'click ms':>10s}")
    for name, encoder, click in rows:
        print(f"{name:12s} {encoder:10.2f} {click * 1000:10.1f}")
    _, enc_b, click_b = rows[-1]
    for name, enc_a, click_a in rows[:-1]:
        print(
            f"{'ratio':10s} {enc_b / enc_a:9.2f}x {click_b / click_a:9.2f}x   (official / {name}; >1 = segany faster)"
        )
    for name, predictor in extra:
        _print_agreement_with_fp32(name, ours, predictor, image, clicks)


if __name__ == "__main__":
    main()
