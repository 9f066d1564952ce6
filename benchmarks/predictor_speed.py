"""Side-by-side speed of segany and the official segment-anything predictor (same weights, same photo).

Prints encoder time (set_image) and per-click time (predict) of both, and the ratios official / segany.
Random weights of the chosen architecture are used (the timing does not depend on the values).

    python benchmarks/predictor_speed.py --model vit_b --repeats 3 --clicks 20
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from support import sample_image, twin_models  # noqa: E402

from segany import SamPredictor  # noqa: E402
from segany.variants import VARIANTS  # noqa: E402


def _time(fn, repeats: int) -> float:
    """Best of ``repeats`` wall-clock seconds (the best is the least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument("--repeats", type=int, default=2, help="encoder runs per implementation (best is kept)")
    parser.add_argument("--clicks", type=int, default=20, help="predict calls timed per implementation")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from segment_anything import SamPredictor as OfficialPredictor

    ours_model, official_model = twin_models(VARIANTS[args.model], seed=0)
    image = sample_image()
    ours, official = SamPredictor(ours_model), OfficialPredictor(official_model)
    rng = np.random.default_rng(0)
    h, w = image.shape[:2]
    clicks = [(np.array([[rng.uniform(0, w), rng.uniform(0, h)]]), np.array([1])) for _ in range(args.clicks)]

    rows = []
    for name, predictor in (("segany", ours), ("official", official)):
        predictor.set_image(image)  # warm-up (allocator, thread pool)
        encoder = _time(lambda p=predictor: p.set_image(image), args.repeats)
        predictor.predict(*clicks[0])
        start = time.perf_counter()
        for coords, labels in clicks:
            predictor.predict(coords, labels)
        click = (time.perf_counter() - start) / len(clicks)
        rows.append((name, encoder, click))

    print(f"model {args.model}, image {w}x{h}, torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'':10s} {'encoder s':>10s} {'click ms':>10s}")
    for name, encoder, click in rows:
        print(f"{name:10s} {encoder:10.2f} {click * 1000:10.1f}")
    (_, enc_a, click_a), (_, enc_b, click_b) = rows
    print(f"{'ratio':10s} {enc_b / enc_a:9.2f}x {click_b / click_a:9.2f}x   (official / segany; >1 = segany faster)")


if __name__ == "__main__":
    main()
