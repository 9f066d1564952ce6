"""Images per minute of ``segany engine label``: in one process, and on a local Ray cluster with 1 and 2 actors.

Makes ``--images`` synthetic 1024 x 768 scenes, then runs the CLI once per setting into a fresh folder
and prints, side by side, the wall time, images per minute (start-up included: cluster, model loading)
and steady images per minute (after the first image came back), read from each folder's runs.jsonl,
with each command line.

    python benchmarks/engine_throughput.py --checkpoint tests/data/amg_fixture.safetensors
    python benchmarks/engine_throughput.py            # the bundled model
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from segany.training.synthetic import make_scene


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--checkpoint", default=None, help="default: the bundled model")
    parser.add_argument("--points-per-side", type=int, default=32)
    parser.add_argument("--actors", default="1,2", help="Ray actor counts to try (default: 1,2)")
    parser.add_argument("--no-local", action="store_true", help="skip the single-process run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="segany-engine-bench-") as tmp:
        root = Path(tmp)
        images = root / "images"
        images.mkdir()
        for i in range(args.images):
            scene = make_scene(np.random.default_rng(i), 768, 1024)
            Image.fromarray(scene.image).save(images / f"scene{i:03d}.jpg", quality=92)
        base = ["engine", "label", "--input", str(images), "--points-per-side", str(args.points_per_side)]
        if args.checkpoint:
            base += ["--checkpoint", args.checkpoint]
        settings = [] if args.no_local else [("local", [])]
        for actors in (int(a) for a in args.actors.split(",")):
            settings.append((f"ray x{actors}", ["--ray", "local", "--actors", str(actors)]))
        rows = []
        for name, extra in settings:
            out = root / name.replace(" ", "_")
            command = [*base, "--out", str(out), *extra]
            subprocess.run([sys.executable, "-m", "segany", *command], check=True, capture_output=True)
            run = json.loads((out / "runs.jsonl").read_text().splitlines()[-1])
            shown = ["segany", *command]
            shown[shown.index(str(images))] = "IMAGES_DIR"
            shown[shown.index(str(out))] = "OUT_DIR"
            rows.append((name, run, shown))
    print(f"{args.images} images of 1024 x 768, {os.cpu_count()} CPUs")
    print(f"{'setting':<10} {'seconds':>8} {'images/min':>11} {'steady/min':>11} {'masks':>6}")
    for name, run, _ in rows:
        steady = run.get("steady_images_per_minute")
        print(
            f"{name:<10} {run['seconds']:8.1f} {run['images_per_minute']:11.1f} "
            f"{steady if steady is not None else float('nan'):11.1f} {run['masks']:6d}"
        )
    for name, _, command in rows:
        print(f"{name}: {shlex.join(command)}")


if __name__ == "__main__":
    sys.exit(main())
