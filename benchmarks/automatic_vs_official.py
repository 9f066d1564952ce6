"""segany's SamAutomaticMaskGenerator against the official one: same weights, same photo, one run.

Prints the time each spends after the image encoder (generate() minus the set_image() calls inside it),
the ratio, peak
memory of the generate() call, and the agreement of the masks (counts, matched IoU, predicted IoU and
stability differences).

    python benchmarks/automatic_vs_official.py --model vit_b --points-per-side 32
    python benchmarks/automatic_vs_official.py --model vit_t    # against MobileSAM's package
    python benchmarks/automatic_vs_official.py --checkpoint trained.safetensors   # weights that give real masks
"""

from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import segany
from measure import PeakRss
from segany.automatic import SamAutomaticMaskGenerator
from segany.config import TinyViTConfig
from segany.formats import rle
from segany.variants import VARIANTS
from support import SHARED_DATA, mobilesam_sam, official_sam, randomize_


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


def run_one(args: argparse.Namespace) -> dict:
    """Time one implementation in this process: encoder alone, then the whole generate()."""
    if args.checkpoint:
        model = segany.build_sam(checkpoint=args.checkpoint, device="cpu")
    else:
        model = randomize_(segany.sam_from_config(VARIANTS[args.model]), seed=0).eval()
    options = dict(
        points_per_side=args.points_per_side,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        crop_n_layers=args.crop_n_layers,
        output_mode="coco_rle",
    )
    if args.worker == "official" and isinstance(model.config.encoder, TinyViTConfig):
        # vit_t's reference is MobileSAM's package (its generator is the official one, copied).
        from mobile_sam import SamAutomaticMaskGenerator as OfficialGenerator

        generator = OfficialGenerator(mobilesam_sam(model.config, model.state_dict()), **options)
    elif args.worker == "official":
        from segment_anything import SamAutomaticMaskGenerator as OfficialGenerator

        official = official_sam(model.config)
        official.load_state_dict(model.state_dict(), strict=True)
        generator = OfficialGenerator(official, **options)
    else:
        from segany.runtime import reuse_freed_memory

        reuse_freed_memory()  # the documented opt-in of a program that owns its process, as segany auto does
        generator = SamAutomaticMaskGenerator(model, **options)
    image = photo(args.width, args.height)
    # Time the encoder inside generate(): wrap set_image, which both generators call once per crop.
    encoder = [0.0]
    set_image = generator.predictor.set_image

    def timed_set_image(*a, **k):
        start = time.perf_counter()
        set_image(*a, **k)
        encoder[0] += time.perf_counter() - start

    generator.predictor.set_image = timed_set_image
    generator.generate(photo(64, 48))  # warm-up: thread pool, allocator, lazy imports
    encoder[0] = 0.0
    with PeakRss() as memory:
        start = time.perf_counter()
        records = generator.generate(image)
        total = time.perf_counter() - start
    encoder = encoder[0]
    return {"records": records, "encoder": encoder, "total": total, "peak_mib": memory.extra_mib}


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
    parser.add_argument("--worker", choices=["segany", "official"], help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        with open(args.result, "wb") as handle:
            pickle.dump(run_one(args), handle)
        return

    # Each implementation runs in its own process, so neither inherits the other's memory state.
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("segany", "official"):
            result = Path(tmp) / f"{name}.pkl"
            subprocess.run(
                [sys.executable, __file__, *sys.argv[1:], "--worker", name, "--result", str(result)],
                check=True,
            )
            with open(result, "rb") as handle:
                results[name] = pickle.load(handle)

    print(
        f"{args.checkpoint or args.model} (random weights)" if not args.checkpoint else args.checkpoint,
        f"{args.width}x{args.height} photo, {args.points_per_side}x{args.points_per_side} grid, "
        f"pred_iou_thresh {args.pred_iou_thresh}, stability_score_thresh {args.stability_score_thresh}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}",
    )
    print(
        f"{'':10s} {'encoder s':>10s} {'generate s':>11s} {'after enc s':>12s} {'peak +MiB':>10s} {'masks':>6s}"
    )
    for name, r in results.items():
        after = r["total"] - r["encoder"]
        print(
            f"{name:10s} {r['encoder']:10.2f} {r['total']:11.2f} {after:12.2f} {r['peak_mib']:10.0f} {len(r['records']):6d}"
        )
    ours, theirs = results["segany"], results["official"]
    ratio = (theirs["total"] - theirs["encoder"]) / (ours["total"] - ours["encoder"])
    print(f"ratio after the encoder (official / segany): {ratio:.2f}x")
    print(agreement(ours["records"], theirs["records"]))


if __name__ == "__main__":
    main()
