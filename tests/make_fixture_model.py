"""Train the small fixture model on synthetic scenes and check it with the official automatic generator.

    python tests/make_fixture_model.py                     # 10 minutes on one CPU thread
    python tests/make_fixture_model.py --check-only        # only the check, on the existing file
    python tests/make_fixture_model.py --sharpen-from trained.safetensors   # only the sharpening step

The weights go to ``tests/data/amg_fixture.safetensors`` (float16, config in the metadata); the
architecture is ``support.FIXTURE``. The check runs ``segment_anything.SamAutomaticMaskGenerator`` on
an official model holding the same weights, over unseen scenes, and prints how many masks pass its
default filters and how well they match the true shapes.

Training follows the paper at toy scale: per step a batch of scenes, one image-encoder pass, then
single positive points (3 candidates, only the best one trained) and noisy boxes (single mask), with
targets at the low-resolution mask size. The learning-rate schedule follows the elapsed fraction of
the time budget, so a run of any length ends with a decayed rate.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from segany import Sam, read_checkpoint, sam_from_config, save_checkpoint
from segany.training.losses import mask_iou, sam_loss
from segany.training.synthetic import Scene, SyntheticScenes, make_scene
from support import FIXTURE, FIXTURE_PATH, official_sam

IMG_SIZE = FIXTURE.encoder.img_size
LOW_RES = 4 * FIXTURE.encoder.embedding_grid  # side of the low-resolution logits (64)
MAX_BYTES = 4_000_000
CHECK_SIZES = ((256, 256), (200, 300))
CHECK_SEED_OFFSET = 1_000_003  # check scenes never come from the training stream


@dataclass(frozen=True)
class Prompts:
    """Prompts of one kind for a batch of scenes, in the model's input frame.

    Attributes:
        scene: ``P`` int64 index of each prompt's scene (its image embedding).
        coords: ``P x 2`` XY pixels for points, ``P x 4`` XYXY for boxes.
        targets: ``P x 64 x 64`` bool masks over the padded input square.
    """

    scene: torch.Tensor
    coords: torch.Tensor
    targets: torch.Tensor

    def to(self, device: torch.device) -> Prompts:
        return Prompts(self.scene.to(device), self.coords.to(device), self.targets.to(device))


@dataclass(frozen=True)
class Batch:
    """Images (``3 x h x w`` float 0-255, longest side ``IMG_SIZE``), point and box prompts."""

    images: list[torch.Tensor]
    points: Prompts
    boxes: Prompts

    def to(self, device: torch.device) -> Batch:
        return Batch(
            [image.to(device) for image in self.images], self.points.to(device), self.boxes.to(device)
        )


def low_res_targets(masks: np.ndarray) -> torch.Tensor:
    """``N x h x w`` bool masks (input frame) -> ``N x 64 x 64`` bool, the frame of the low-res logits.

    Padded at the bottom/right to the encoder's square like the image, then each 4 x 4 block votes.
    """
    padded = np.zeros((len(masks), IMG_SIZE, IMG_SIZE), dtype=np.float32)
    padded[:, : masks.shape[1], : masks.shape[2]] = masks
    scale = IMG_SIZE // LOW_RES
    return F.avg_pool2d(torch.from_numpy(padded)[:, None], scale)[:, 0] >= 0.5


def random_size(rng: np.random.Generator) -> tuple[int, int]:
    """Half square images, half with a shorter side: the generator pads those, the model must too."""
    if rng.random() < 0.5:
        return IMG_SIZE, IMG_SIZE
    short = int(rng.integers(IMG_SIZE // 2, IMG_SIZE))
    return (short, IMG_SIZE) if rng.random() < 0.5 else (IMG_SIZE, short)


def segments(scene: Scene) -> list[np.ndarray]:
    """Instance masks plus each connected piece of the background, which grid points also land on."""
    pieces = [scene.masks[i] for i in range(len(scene.masks))]
    count, labels = cv2.connectedComponents(scene.background.astype(np.uint8), connectivity=4)
    pieces += [labels == k for k in range(1, count) if (labels == k).sum() >= 100]
    return pieces


def noisy_box(rng: np.random.Generator, mask: np.ndarray) -> np.ndarray:
    """XYXY box of ``mask`` with each side moved by N(0, 10% of the box side), at most 20 px (as in SAM)."""
    ys, xs = np.nonzero(mask)
    box = np.array([xs.min(), ys.min(), xs.max(), ys.max()], dtype=np.float64)
    side = np.array([box[2] - box[0], box[3] - box[1]] * 2)
    box += np.clip(rng.normal(0.0, 0.1 * side), -20, 20)
    h, w = mask.shape
    box = np.clip(box, 0, [w - 1, h - 1, w - 1, h - 1])
    box[2:] = np.maximum(box[2:], box[:2])
    return box


def make_batch(
    rng: np.random.Generator, scenes: int, points: int, boxes: int, background_rate: float
) -> Batch:
    """Draw ``scenes`` scenes and, per scene, ``points`` point prompts and ``boxes`` box prompts."""
    images, point_parts, box_parts = [], [], []
    for index in range(scenes):
        scene = make_scene(rng, *random_size(rng))
        images.append(torch.from_numpy(scene.image).permute(2, 0, 1).float())
        pieces = segments(scene)
        instances = len(scene.masks)
        chosen = []
        for _ in range(points):
            background = len(pieces) > instances and rng.random() < background_rate
            k = int(rng.integers(instances, len(pieces)) if background else rng.integers(instances))
            ys, xs = np.nonzero(pieces[k])
            pick = int(rng.integers(len(xs)))
            # Any spot inside the pixel: grid points fall anywhere, not only on pixel corners.
            chosen.append((k, xs[pick] + rng.random() - 0.5, ys[pick] + rng.random() - 0.5))
        ks = [k for k, _, _ in chosen]
        point_parts.append(
            (
                [index] * points,
                [(x, y) for _, x, y in chosen],
                low_res_targets(np.stack([pieces[k] for k in ks])),
            )
        )
        box_ks = rng.integers(instances, size=boxes)
        box_parts.append(
            (
                [index] * boxes,
                [noisy_box(rng, scene.masks[k]) for k in box_ks],
                low_res_targets(scene.masks[box_ks]),
            )
        )
    return Batch(images, _prompts(point_parts), _prompts(box_parts))


def _prompts(parts: list[tuple[list[int], list, torch.Tensor]]) -> Prompts:
    return Prompts(
        scene=torch.tensor([i for scene, _, _ in parts for i in scene], dtype=torch.int64),
        coords=torch.tensor(np.array([c for _, coords, _ in parts for c in coords]), dtype=torch.float32),
        targets=torch.cat([targets for _, _, targets in parts]),
    )


def learning_rate(step: int, progress: float, peak: float, warmup: int) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 5% of ``peak`` as progress goes 0 -> 1."""
    warm = min(1.0, (step + 1) / warmup)
    return peak * warm * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))


def train(args: argparse.Namespace) -> Sam:
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    device = torch.device(args.device)
    model = sam_from_config(FIXTURE).to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    # Decay matrices only (nanoGPT's rule): norms and biases have nothing to regularise.
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.01},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=args.lr,
    )
    budget = args.minutes * 60.0
    start = time.monotonic()
    logs: dict[str, list[float]] = {}
    step = 0
    while (elapsed := time.monotonic() - start) < budget:
        lr = learning_rate(step, elapsed / budget, args.lr, args.warmup)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = make_batch(rng, args.scenes, args.points, args.boxes, args.background_rate).to(device)
        embeddings = model.embed_images(batch.images)
        point_logits, point_iou = model.decode(
            embeddings[batch.points.scene],
            points=(batch.points.coords[:, None], torch.ones_like(batch.points.scene)[:, None]),
            multimask_output=True,
        )
        box_logits, box_iou = model.decode(
            embeddings[batch.boxes.scene], boxes=batch.boxes.coords, multimask_output=False
        )
        point_loss, point_parts = sam_loss(point_logits, point_iou, batch.points.targets)
        box_loss, box_parts = sam_loss(box_logits, box_iou, batch.boxes.targets)
        loss = point_loss + box_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()

        for name, value in {"loss": loss.detach(), **_prefixed("point", point_parts)}.items():
            logs.setdefault(name, []).append(float(value))
        logs.setdefault("box_iou", []).append(float(box_parts["iou"]))
        step += 1
        if step % args.log_every == 0:
            means = "  ".join(f"{k} {np.mean(v):.4f}" for k, v in logs.items())
            print(f"step {step:5d}  {elapsed / 60:5.1f} min  lr {lr:.2e}  {means}", flush=True)
            logs = {}
    print(f"trained {step} steps in {(time.monotonic() - start) / 60:.1f} min", flush=True)
    return model.cpu().eval()


def _prefixed(prefix: str, parts: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}_{k}": v for k, v in parts.items() if k in ("focal", "dice", "iou_mse", "iou")}


@torch.no_grad()
def sharpen(model: Sam, logit_scale: float, iou_shift: float) -> Sam:
    """Make minutes of CPU training usable by the generator's default filters.

    After a short run the masks are the right regions but their logits are soft (stability ~0.02) and the
    IoU head is modest (~0.3), so the default filters (stability 0.95, predicted IoU 0.88) keep nothing.
    Scaling every hypernetwork output by ``logit_scale`` multiplies the mask logits (same masks, sharp
    edges) and shifting the IoU head's bias lifts its predictions, so the generator keeps dozens of
    distinct masks per scene: what the agreement tests need to exercise filters and NMS for real.
    """
    for mlp in model.mask_decoder.output_hypernetworks_mlps:
        mlp.layers[-1].weight.mul_(logit_scale)
        mlp.layers[-1].bias.mul_(logit_scale)
    model.mask_decoder.iou_prediction_head.layers[-1].bias.add_(iou_shift)
    return model


def save_half(model: Sam, out: Path) -> None:
    """Save as float16 (half the size; segany and the official package load it into float32)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(copy.deepcopy(model).half(), out, config=FIXTURE)
    size = out.stat().st_size
    print(f"wrote {out} ({size / 1e6:.2f} MB)", flush=True)
    if size > MAX_BYTES:
        raise SystemExit(f"{out} is {size} bytes, over the {MAX_BYTES}-byte budget for a test fixture.")


@torch.no_grad()
def check(path: Path, seed: int) -> None:
    """Print the official generator's masks per image, stability and best IoU to the true shapes."""
    from segment_anything import SamAutomaticMaskGenerator

    state_dict, _ = read_checkpoint(path)
    official = official_sam(FIXTURE)
    official.load_state_dict(state_dict, strict=True)
    generator = SamAutomaticMaskGenerator(official, points_per_side=16)
    totals: list[tuple[int, int]] = []
    for height, width in CHECK_SIZES:
        scenes = SyntheticScenes(seed + CHECK_SEED_OFFSET, height, width)
        for index in range(3):
            scene = scenes[index]
            records = generator.generate(scene.image)
            masks = (
                np.stack([r["segmentation"] for r in records]) if records else np.zeros((0, height, width))
            )
            best = _best_iou(masks, scene.masks)
            matched = {int(k) for k, iou in zip(*best, strict=True) if iou > 0.8}
            stability = np.mean([r["stability_score"] for r in records]) if records else float("nan")
            predicted = np.mean([r["predicted_iou"] for r in records]) if records else float("nan")
            print(
                f"{height}x{width} scene {index}: {len(records)} masks, {len(scene.masks)} shapes, "
                f"{len(matched)} shapes matched (IoU > 0.8), mean stability {stability:.3f}, "
                f"mean predicted IoU {predicted:.3f}, mean best IoU {np.mean(best[1]) if records else 0:.3f}, "
                f"masks with best IoU > 0.8: {int((best[1] > 0.8).sum())}",
                flush=True,
            )
            totals.append((len(records), int((best[1] > 0.8).sum())))
    counts = np.array(totals)
    print(
        f"mean masks per image {counts[:, 0].mean():.1f}, matching a shape {counts[:, 1].sum()}/{counts[:, 0].sum()}",
        flush=True,
    )


def _best_iou(masks: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each generated mask, the index of the true shape it overlaps best and that IoU."""
    if len(masks) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    ious = mask_iou(
        torch.from_numpy(np.where(masks, 1.0, -1.0))[:, None].float(),
        torch.from_numpy(truth)[None],
    ).numpy()
    return ious.argmax(axis=1), ious.max(axis=1)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="training time budget")
    parser.add_argument("--out", type=Path, default=FIXTURE_PATH, help="where to write the weights")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the scenes")
    parser.add_argument("--lr", type=float, default=1e-3, help="peak AdamW learning rate")
    parser.add_argument("--warmup", type=int, default=50, help="warm-up steps")
    parser.add_argument("--scenes", type=int, default=4, help="scenes per step")
    parser.add_argument("--points", type=int, default=6, help="point prompts per scene")
    parser.add_argument("--boxes", type=int, default=1, help="box prompts per scene")
    parser.add_argument(
        "--background-rate", type=float, default=0.15, help="share of points on the background"
    )
    parser.add_argument("--log-every", type=int, default=25, help="steps between log lines")
    parser.add_argument("--device", default="cpu", help="where to train (cpu, cuda, ...)")
    parser.add_argument("--check-only", action="store_true", help="only check the weights in --out")
    parser.add_argument(
        "--logit-scale", type=float, default=30.0, help="hypernetwork output scale (see sharpen)"
    )
    parser.add_argument(
        "--iou-shift", type=float, default=0.7, help="added to the IoU head's bias (see sharpen)"
    )
    parser.add_argument(
        "--sharpen-from",
        type=Path,
        default=None,
        help="skip training: sharpen these trained weights into --out",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    # One thread: the fixture is made on shared machines, and the same thread count keeps CPU runs
    # comparable.
    torch.set_num_threads(1)
    if args.sharpen_from is not None:
        from segany import build_sam

        trained = build_sam(FIXTURE, checkpoint=args.sharpen_from, device="cpu")
        save_half(sharpen(trained, args.logit_scale, args.iou_shift), args.out)
    elif not args.check_only:
        save_half(sharpen(train(args), args.logit_scale, args.iou_shift), args.out)
    check(args.out, args.seed)


if __name__ == "__main__":
    main()
