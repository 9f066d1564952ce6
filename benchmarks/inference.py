"""Every segany inference path against the official package, side by side in one run.

Same random weights (every tensor perturbed, see tests/support.py), same photo. For each path --
official fp32; segany fp32, bf16, compiled (``--compile``), ONNX Runtime fp32 and int8 -- it prints:
encoder time (``set_image``), per-click time (``predict``, one point, 3 masks), throughput of many
prompts on one image (``predict_torch``, one point each, batches of 64, full-size boolean masks), peak
memory above the loaded model over ``set_image``, one click and one batch of 64 prompts (each path in its
own process; later batches reuse the first one's memory), and agreement with the official fp32
masks (mean / min mask IoU over the clicks) and embedding. Timed runs are interleaved round by round
and each path keeps its best, so a machine that slows down during the run favours no path; the range of
each round's own ratios (official / path, times taken minutes apart at most) is printed too.

    python benchmarks/inference.py --model vit_b --size 1200x800 --threads 2
    python benchmarks/inference.py --paths fp32,bf16 --prompts 256 --compile
    python benchmarks/inference.py --device cuda --paths fp32,bf16 --compile   # on a GPU

On a GPU (``--device cuda``) the times wait for the device (``torch.cuda.synchronize``), the memory column
is PyTorch's peak CUDA allocation, and the ONNX Runtime paths are not offered (segany's ONNX Runtime
backend runs on the CPU).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from measure import PeakCuda, PeakRss
from segany import SamPredictor
from segany.config import TinyViTConfig
from segany.variants import VARIANTS
from support import mobilesam_twin_models, sample_image, twin_models

PATHS = ("fp32", "bf16", "compiled", "ort", "int8")
_BATCH = 64


def _models(model: str, device: torch.device):
    config = VARIANTS[model]
    if isinstance(config.encoder, TinyViTConfig):
        from mobile_sam import SamPredictor as OfficialPredictor

        ours, official = mobilesam_twin_models(config, seed=0)
    else:
        from segment_anything import SamPredictor as OfficialPredictor

        ours, official = twin_models(config, seed=0)
    return ours.to(device), official.to(device), OfficialPredictor


def _predictors(model: str, paths: list[str], device: torch.device) -> dict[str, object]:
    ours, official, official_predictor = _models(model, device)
    made: dict[str, object] = {"official": official_predictor(official)}
    options = {
        "fp32": dict(),
        "bf16": dict(dtype="bfloat16"),
        "compiled": dict(compile=True),
        "ort": dict(backend="onnxruntime"),
        "int8": dict(backend="onnxruntime-int8"),
    }
    for path in paths:
        made[path] = SamPredictor(ours, **options[path])
    return made


def _image(size: str | None) -> np.ndarray:
    image = sample_image()
    if size:
        width, height = (int(v) for v in size.lower().split("x"))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    return image


def _clicks(image: np.ndarray, count: int, seed: int) -> np.ndarray:
    h, w = image.shape[:2]
    rng = np.random.default_rng(seed)
    return np.stack([rng.uniform(0, w, count), rng.uniform(0, h, count)], axis=1)


def _many_prompts(predictor, image: np.ndarray, points: np.ndarray) -> None:
    """All ``points`` as single-point prompts, ``_BATCH`` at a time, full-size masks (the generator's case)."""
    transform = predictor.transform
    for start in range(0, len(points), _BATCH):
        chunk = points[start : start + _BATCH]
        coords = torch.as_tensor(transform.apply_coords(chunk, image.shape[:2]), dtype=torch.float)[:, None]
        labels = torch.ones(len(chunk), 1, dtype=torch.int)
        predictor.predict_torch(
            coords.to(predictor.device), labels.to(predictor.device), multimask_output=True
        )
    _wait(predictor.device)


def _wait(device: torch.device) -> None:
    """Let a GPU finish its queued work, so that a timer stopped next measures it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _memory(args: argparse.Namespace, path: str) -> float:
    """Peak MiB above the loaded models for one path, in a fresh process (allocators keep freed memory)."""
    command = [sys.executable, __file__, "--memory-of", path, "--model", args.model, "--prompts", "64"]
    command += ["--device", args.device]
    if args.size:
        command += ["--size", args.size]
    if args.threads:
        command += ["--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(f"memory of {path} failed: {done.stderr.strip().splitlines()[-1:]}")
        return float("nan")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["peak_mib"])


def _memory_child(args: argparse.Namespace) -> None:
    path = args.memory_of
    device = torch.device(args.device)
    predictors = _predictors(args.model, [] if path == "official" else [path], device)
    predictor = predictors[path]
    image = _image(args.size)
    with PeakCuda(device) if device.type == "cuda" else PeakRss() as memory:
        predictor.set_image(image)
        predictor.predict(_clicks(image, 1, 0), np.array([1]))
        _many_prompts(predictor, image, _clicks(image, args.prompts, 1))
    print(json.dumps({"peak_mib": memory.extra_mib}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_b", choices=sorted(VARIANTS))
    parser.add_argument(
        "--paths",
        default=None,
        help=f"comma-separated, of {','.join(PATHS)} (default: fp32,bf16,ort,int8; on a GPU fp32,bf16)",
    )
    parser.add_argument("--compile", action="store_true", help="add the torch.compile path (slow to build)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best kept)")
    parser.add_argument("--clicks", type=int, default=20, help="predict calls per round and path")
    parser.add_argument("--prompts", type=int, default=1024, help="prompts for the throughput figure")
    parser.add_argument("--size", default="1200x800", help="WxH the photo is resized to (about 1 megapixel)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--no-memory", action="store_true", help="skip the per-path memory processes")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_of:
        _memory_child(args)
        return
    try:
        device = torch.device(args.device)
    except RuntimeError:
        parser.error(f"--device {args.device!r} is not a device; use cpu, cuda or cuda:N.")
    on_gpu = device.type == "cuda"
    paths = [p for p in (args.paths or ("fp32,bf16" if on_gpu else "fp32,bf16,ort,int8")).split(",") if p]
    if args.compile and "compiled" not in paths:
        paths.append("compiled")
    unknown = sorted(set(paths) - set(PATHS))
    if unknown:
        parser.error(f"unknown paths {unknown}; choose from {','.join(PATHS)}")
    if on_gpu:
        if not torch.cuda.is_available():
            parser.error(f"--device {args.device}: PyTorch sees no CUDA device here.")
        cpu_only = sorted(set(paths) & {"ort", "int8"})
        if cpu_only:
            parser.error(
                f"paths {cpu_only} run on the CPU only; leave them out of --paths with --device cuda."
            )

    predictors = _predictors(args.model, paths, device)
    names = list(predictors)
    image = _image(args.size)
    clicks = _clicks(image, args.clicks, 0)
    prompts = _clicks(image, args.prompts, 1)
    label = np.array([1])

    # Agreement with the official fp32 masks, and warm-up (allocators, thread pools, compilation).
    reference = predictors["official"]
    reference.set_image(image)
    expected = [reference.predict(c[None], label)[0] for c in clicks]
    embedding = reference.get_image_embedding()
    agreement: dict[str, tuple[float, float, float]] = {}
    for name in names:
        predictor = predictors[name]
        predictor.set_image(image)
        ious = [
            _iou(a, b)
            for c, want in zip(clicks, expected, strict=True)
            for a, b in zip(predictor.predict(c[None], label)[0], want, strict=True)
        ]
        diff = (predictor.get_image_embedding().float() - embedding).abs().max().item()
        agreement[name] = (float(np.mean(ious)), float(np.min(ious)), diff)

    # Per round and path: encoder and click times (a path's figure is its best round).
    encoder_rounds: dict[str, list[float]] = {n: [] for n in names}
    click_rounds: dict[str, list[float]] = {n: [] for n in names}
    throughput = {n: 0.0 for n in names}
    for round_index in range(args.rounds):
        for name in names:
            predictor = predictors[name]
            start = time.perf_counter()
            predictor.set_image(image)
            _wait(device)
            encoder_rounds[name].append(time.perf_counter() - start)
            start = time.perf_counter()
            for c in clicks:
                predictor.predict(c[None], label)
            click_rounds[name].append((time.perf_counter() - start) / len(clicks))
            if round_index == 0:  # one throughput run per path: the longest measurement
                start = time.perf_counter()
                _many_prompts(predictor, image, prompts)
                throughput[name] = len(prompts) / (time.perf_counter() - start)
    memory = {n: float("nan") if args.no_memory else _memory(args, n) for n in names}
    encoder = {n: min(times) for n, times in encoder_rounds.items()}
    click = {n: min(times) for n, times in click_rounds.items()}

    h, w = image.shape[:2]
    print(
        f"model {args.model} (random weights), image {w}x{h}, torch {torch.__version__}, "
        f"threads {torch.get_num_threads()}, best of {args.rounds} interleaved rounds, device {_device_name(device)}"
    )
    print(
        f"{'path':9s} {'encoder s':>9s} {'click ms':>9s} {'prompts/s':>10s} {'peak MiB':>9s}"
        f" {'enc x':>6s} {'click x':>7s} {'thru x':>7s} {'mask IoU mean/min':>18s} {'emb |diff|':>10s}"
    )
    for name in names:
        mean_iou, min_iou, diff = agreement[name]
        print(
            f"{name:9s} {encoder[name]:9.2f} {click[name] * 1000:9.1f} {throughput[name]:10.1f}"
            f" {memory[name]:9.0f} {encoder['official'] / encoder[name]:5.2f}x"
            f" {click['official'] / click[name]:6.2f}x {throughput[name] / throughput['official']:6.2f}x"
            f" {mean_iou:9.4f}/{min_iou:.4f} {diff:10.1e}"
        )
    print("x = official / path time (throughput: path / official); IoU against the official fp32 masks")
    # The machine's speed drifts during a run; a round's ratio compares times taken minutes apart at most.
    print("ratios within each round (official's time that round / the path's), lowest-highest:")
    for name in names[1:]:
        spans = [
            _span([o / p for o, p in zip(rounds["official"], rounds[name], strict=True)])
            for rounds in (encoder_rounds, click_rounds)
        ]
        print(f"{name:9s} encoder {spans[0]}  click {spans[1]}")


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}x"


if __name__ == "__main__":
    main()
