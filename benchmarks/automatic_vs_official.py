"""segany's SamAutomaticMaskGenerator against the official one: same weights, same photo, one run.

Prints the time each spends after the image encoder (generate() minus set_image()), the ratio, peak
memory of the generate() call, and the agreement of the masks (counts, matched IoU, predicted IoU and
stability differences).

    python benchmarks/automatic_vs_official.py --model vit_b --points-per-side 32
    python benchmarks/automatic_vs_official.py --checkpoint trained.safetensors   # weights that give real masks
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import segany
from segany.automatic import SamAutomaticMaskGenerator
from segany.formats import rle
from segany.variants import VARIANTS
from support import SHARED_DATA, official_sam, randomize_


def _rss() -> int:
    """Resident memory of this process in bytes (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class PeakRss:
    """Peak resident memory of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> PeakRss:
        self.base = _rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def extra_mib(self) -> float:
        return (self.peak - self.base) / 2**20


def photo(width: int, height: int) -> np.ndarray:
    """A real photo resized and centre-cropped to ``width x height`` (synthetic if ../shared is absent)."""
    path = SHARED_DATA / "images" / "truck.jpg"
    if path.exists():
        img = Image.open(path).convert("RGB")
        scale = max(width / img.width, height / img.height)
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
        left, top = (img.width - width) // 2, (img.height - height) // 2
        return np.asarray(img.crop((left, top, left + width, top + height)))
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (height, width, 3), dtype=np.uint8)


def agreement(ours: list[dict], theirs: list[dict]) -> str:
    """Match each official mask to segany's best-overlapping one."""
    if not theirs:
        return f"official 0 masks, segany {len(ours)}"
    a = np.stack([rle.decode(r["segmentation"]) for r in ours]) if ours else np.zeros((0, 1, 1), bool)
    worst_iou, worst_pred, worst_stab = 1.0, 0.0, 0.0
    for record in theirs:
        mask = rle.decode(record["segmentation"])
        if len(a) == 0:
            worst_iou = 0.0
            break
        inter = (a & mask).reshape(len(a), -1).sum(1)
        union = (a | mask).reshape(len(a), -1).sum(1)
        best = int(np.argmax(inter / np.maximum(union, 1)))
        worst_iou = min(worst_iou, inter[best] / max(union[best], 1))
        worst_pred = max(worst_pred, abs(ours[best]["predicted_iou"] - record["predicted_iou"]))
        worst_stab = max(worst_stab, abs(ours[best]["stability_score"] - record["stability_score"]))
    return (
        f"masks: official {len(theirs)}, segany {len(ours)}; every official mask matched with IoU >= {worst_iou:.4f}, "
        f"|predicted_iou diff| <= {worst_pred:.1e}, |stability diff| <= {worst_stab:.1e}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument(
        "--checkpoint", default=None, help="weights to use (default: random weights of --model)"
    )
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--height", type=int, default=768)
    parser.add_argument("--pred-iou-thresh", type=float, default=0.88)
    parser.add_argument("--stability-score-thresh", type=float, default=0.95)
    parser.add_argument("--crop-n-layers", type=int, default=0)
    parser.add_argument("--skip-official", action="store_true", help="time segany only")
    args = parser.parse_args()
    from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator

    if args.checkpoint:
        ours_model = segany.build_sam(checkpoint=args.checkpoint, device="cpu")
    else:
        ours_model = randomize_(segany.sam_from_config(VARIANTS[args.model]), seed=0).eval()
    official_model = official_sam(ours_model.config)
    official_model.load_state_dict(ours_model.state_dict(), strict=True)
    image = photo(args.width, args.height)
    options = dict(
        points_per_side=args.points_per_side,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        crop_n_layers=args.crop_n_layers,
        output_mode="coco_rle",
    )
    results = {}
    runs = [("segany", SamAutomaticMaskGenerator(ours_model, **options))]
    if not args.skip_official:
        runs.append(("official", OfficialGenerator(official_model, **options)))
    for name, generator in runs:
        start = time.perf_counter()
        generator.predictor.set_image(image)
        encoder = time.perf_counter() - start
        generator.predictor.reset_image()
        with PeakRss() as memory:
            start = time.perf_counter()
            records = generator.generate(image)
            total = time.perf_counter() - start
        results[name] = (records, total - encoder, memory.extra_mib, encoder, total)

    print(
        f"{args.model if not args.checkpoint else args.checkpoint}, {args.width}x{args.height} photo, "
        f"{args.points_per_side}x{args.points_per_side} grid, torch {torch.__version__}, threads {torch.get_num_threads()}"
    )
    print(
        f"{'':10s} {'encoder s':>10s} {'generate s':>11s} {'after enc s':>12s} {'peak +MiB':>10s} {'masks':>6s}"
    )
    for name, (records, after, mem, encoder, total) in results.items():
        print(f"{name:10s} {encoder:10.2f} {total:11.2f} {after:12.2f} {mem:10.0f} {len(records):6d}")
    if "official" in results:
        ours_after, theirs_after = results["segany"][1], results["official"][1]
        print(f"ratio after the encoder (official / segany): {theirs_after / ours_after:.2f}x")
        print(agreement(results["segany"][0], results["official"][0]))


if __name__ == "__main__":
    main()
