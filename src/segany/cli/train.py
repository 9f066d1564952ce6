"""``segany train CONFIG``: train or fine-tune SAM (also under ``torchrun`` for several processes)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..training.trainer import Hook, Trainer


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "train",
        help="train or fine-tune a model (the paper's recipe)",
        description=(
            "Train SAM with simulated interactive prompts as configured in CONFIG (TOML or JSON; see "
            "segany.training.train_config). Writes OUT_DIR/last.pt (resumable), OUT_DIR/log.jsonl and, at "
            "the end, OUT_DIR/model.safetensors. Run it under torchrun for data-parallel training."
        ),
    )
    parser.add_argument("config", metavar="CONFIG", help="training configuration (.toml or .json)")
    parser.add_argument("--out-dir", default=None, help="override the config's out_dir")
    parser.add_argument("--steps", type=int, default=None, help="override the config's steps")
    parser.add_argument("--max-minutes", type=float, default=None, help="stop and save after this long")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: the config's)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--resume",
        action="store_true",
        help="continue from OUT_DIR/last.pt (else the config's progress file)",
    )
    group.add_argument("--overwrite", action="store_true", help="start afresh even if OUT_DIR holds a run")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..build import build_sam
    from ..errors import SegAnyError
    from ..training.train_config import load_train_config
    from ..training.trainer import LAST_STATE, Trainer

    changes = {
        key: value
        for key, value in (
            ("out_dir", args.out_dir),
            ("steps", args.steps),
            ("max_minutes", args.max_minutes),
            ("device", args.device),
        )
        if value is not None
    }
    config = load_train_config(args.config, changes)
    state = Path(config.out_dir) / LAST_STATE
    if state.exists() and not (args.resume or args.overwrite):
        raise SegAnyError(
            f"{config.out_dir} already holds a training run; pass --resume to continue it or --overwrite to start afresh."
        )
    progress = Path(config.progress) if config.progress is not None else None
    if args.resume and not state.exists() and not (progress is not None and progress.exists()):
        raise SegAnyError(
            f"Nothing to resume: {state} does not exist" + (f", nor {progress}." if progress else ".")
        )
    model = None
    if args.resume and not state.exists() and progress is not None and progress.exists():
        # The progress file holds the architecture and every weight, so the checkpoint the run started
        # from need not exist: a fresh clone has only what was committed.
        model = build_sam(checkpoint=progress, device="cpu")
    try:
        trainer = Trainer(config, model=model, hooks=[progress_hook()])
    except ValueError as exc:  # invalid settings found while building (e.g. an unknown part to freeze)
        raise SegAnyError(str(exc)) from exc
    try:
        if args.resume:
            trainer.resume(state)  # or the progress file, on a machine without last.pt
            print(f"Resuming at step {trainer.step} of {config.steps}.", file=sys.stderr)
        result = trainer.run()
    finally:
        trainer.close()
    if trainer.info.is_main:
        done = "stopped early (time limit)" if result.stopped_early else "finished"
        print(
            f"Training {done} at step {result.step}; weights in {Path(config.out_dir) / 'model.safetensors'}."
        )
    return 0


def progress_hook() -> Hook:
    """A tqdm bar over the steps with the latest loss and IoU (main process only)."""
    from ..progress import progress_bar

    bar = None

    def hook(trainer: Trainer, step: int, figures: dict[str, float]) -> None:
        nonlocal bar
        if not trainer.info.is_main:
            return
        if bar is None:
            bar = progress_bar(total=trainer.config.steps, initial=step - 1, unit="step", desc="train")
        bar.update(1)
        bar.set_postfix(loss=f"{figures['loss']:.3f}", iou=f"{figures['iou']:.3f}", refresh=False)
        if step >= trainer.config.steps:
            bar.close()

    return hook
