"""``segany train-text-encoder``: train segany's small text-image encoder on labelled synthetic scenes."""

from __future__ import annotations

import argparse

from ..training.text_config import EncoderTrainConfig
from .config_flags import add_config_flags, config_from_args

# Scenes of this seed are never trained on (training draws from --seed, 0 by default).
CHECK_SEED = 1_000_003
CHECK_SCENES = 100


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train-text-encoder",
        help="train the small text-image encoder of the text-prompt demonstration",
        description=(
            "Train segany's small text-image encoder CLIP-style on crops of labelled synthetic scenes "
            "(phrases such as 'red triangle' or 'large blue ellipse'), check its phrase retrieval on "
            "unseen scenes, and save it as .safetensors for the [text] section of a training config."
        ),
    )
    parser.add_argument("--out", required=True, metavar="FILE.safetensors", help="where to save the encoder")
    add_config_flags(parser, EncoderTrainConfig)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from ..errors import SegAnyError
    from ..progress import progress_bar
    from ..training.text_encoder_training import retrieval_accuracy, train_encoder
    from ..training.text_scenes import TextScenes

    try:
        config = config_from_args(EncoderTrainConfig, args)
    except ValueError as exc:
        raise SegAnyError(f"Bad text encoder option: {exc}.") from exc
    out = Path(args.out)
    if out.suffix != ".safetensors":
        raise SegAnyError(f"--out must name a .safetensors file, got {out}.")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SegAnyError(f"Cannot create the folder of --out ({exc.strerror}: {exc.filename}).") from exc

    bar = progress_bar(total=config.steps, unit="step", desc="train")

    def progress(step: int, figures: dict[str, float]) -> None:
        bar.update(1)
        bar.set_postfix(loss=f"{figures['loss']:.3f}", refresh=False)

    start = time.monotonic()
    encoder = train_encoder(config, progress)
    bar.close()
    minutes = (time.monotonic() - start) / 60
    try:
        encoder.save(out)
    except OSError as exc:
        raise SegAnyError(f"Cannot write --out ({exc.strerror}: {exc.filename}).") from exc
    scenes = TextScenes(CHECK_SEED, config.scene_size, config.scene_size)
    figures = retrieval_accuracy(encoder, scenes, CHECK_SCENES, np.random.default_rng(0))
    shown = ", ".join(f"{key} {value:.3f}" for key, value in figures.items())
    print(f"Trained for {bar.n} steps in {minutes:.1f} min; saved {out}.")
    print(f"Nearest full phrase of each crop of {CHECK_SCENES} unseen scenes, accuracy: {shown}.")
    return 0
