"""The training loop: read it top to bottom in :meth:`Trainer.run`; logs are hooks (``hooks=``), the
resumable state is saved every ``save_every`` steps and at the end.

One optimiser step = ``grad_accum`` micro-batches of ``batch_size`` images per process, each the full
simulated interaction of :class:`~segany.training.interactive.InteractiveLoss`. Every random draw of a
step comes from generators seeded with ``(seed, step, rank)``, and the torch global state (drop path)
is saved with the checkpoint, so an interrupted run resumed from its last checkpoint ends with the same
weights as an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.nn.parallel import DistributedDataParallel

from ..build import build_sam, sam_from_config
from ..checkpoints import load_weights, read_checkpoint, save_checkpoint
from ..config import SamConfig
from ..errors import TextEncoderError
from ..modeling import Sam
from ..runtime import bf16_is_fast, compute_context, resolve_dtype
from . import distributed
from .interactive import InteractiveLoss
from .loader import StepBatches
from .optim import build_optimizer, build_scheduler, freeze, reschedule, set_drop_path
from .samples import MaskFilter
from .state import load_progress, load_training_state, save_progress, save_training_state
from .synthetic import Scene
from .train_config import TrainConfig, TrainConfigError

if TYPE_CHECKING:
    from ..text.encoder import TextImageEncoder

LAST_STATE = "last.pt"
FINAL_WEIGHTS = "model.safetensors"
LOG_FILE = "log.jsonl"

Hook = Callable[["Trainer", int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What a run did: the step it reached and the last logged figures."""

    step: int
    stopped_early: bool
    last_log: dict[str, float] = field(default_factory=dict)


def build_model(config: TrainConfig) -> Sam:
    """The model to train: a variant or an explicit config, from scratch or from ``config.checkpoint``
    (with ``config.new_parts`` left at their initialisation)."""
    architecture = config.model_config or config.model
    if config.checkpoint is not None and config.new_parts:
        return _with_new_parts(architecture, config.checkpoint, config.new_parts)
    if config.checkpoint is not None:
        return build_sam(architecture, checkpoint=config.checkpoint, device="cpu")
    model = build_sam(architecture, device="cpu") if isinstance(architecture, str) else None
    if model is None:
        assert architecture is not None
        model = sam_from_config(architecture)
    if config.imagenet_encoder:
        from ..modeling import EfficientNetLiteEncoder
        from .pretrained import load_imagenet_backbone

        encoder = model.image_encoder
        if not isinstance(encoder, EfficientNetLiteEncoder):
            raise TrainConfigError("imagenet_encoder needs an efficientnet_lite encoder in [model_config].")
        assert model.config is not None
        load_imagenet_backbone(encoder, model.config.encoder.variant)  # type: ignore[union-attr]
    return model


def _with_new_parts(architecture: str | SamConfig | None, checkpoint: str, prefixes: Sequence[str]) -> Sam:
    """``architecture`` with the weights of ``checkpoint``; the parameters under ``prefixes`` that the
    checkpoint lacks keep their initialisation. Any other mismatch is refused as by ``build_sam``."""
    if architecture is None:
        raise TrainConfigError("new_parts needs the new architecture: give model or [model_config].")
    model = build_sam(architecture, device="cpu")
    state_dict, _ = read_checkpoint(checkpoint)
    fresh = {
        key: value
        for key, value in model.state_dict().items()
        if key not in state_dict and any(key == p or key.startswith(p + ".") for p in prefixes)
    }
    load_weights(model, {**state_dict, **fresh}, str(checkpoint))
    return model


def open_text_encoder(config: TrainConfig, model: Sam, device: torch.device) -> TextImageEncoder | None:
    """The frozen text-image encoder of ``config.text`` on ``device`` (None without a [text] section);
    refused when its width is not the model's ``text_embed_dim``."""
    if config.text is None:
        return None
    from ..text.load import load_text_encoder

    width = model.prompt_encoder.text_embed_dim
    if width == 0:
        raise TextEncoderError(
            "Training with [text] needs a model with a text path: set text_embed_dim in [model_config]."
        )
    encoder = load_text_encoder(config.text.encoder, device=device)
    if encoder.embed_dim != width:
        raise TextEncoderError(
            f"The text encoder {config.text.encoder} gives {encoder.embed_dim}-wide embeddings but the model "
            f"takes {width}; set text_embed_dim = {encoder.embed_dim} in [model_config]."
        )
    if isinstance(encoder, torch.nn.Module):  # segany's small encoder; CLIP's wrapper is frozen already
        encoder.eval().requires_grad_(False)
    return encoder


def open_training_data(config: TrainConfig) -> Sequence[Scene]:
    """The configured datasets (with their copy-paste and scale jitter), mixed by weight."""
    from .copy_paste import CopyPaste, CopyPasteConfig
    from .datasets import Mixture, open_dataset
    from .object_crops import ObjectCropConfig, ObjectCrops
    from .scale_jitter import ScaleJitter, ScaleJitterConfig

    datasets = []
    for source in config.data:
        dataset = open_dataset(source.spec)
        if source.copy_paste:
            backgrounds = open_dataset(source.backgrounds) if source.backgrounds else None
            options = source.copy_paste if isinstance(source.copy_paste, dict) else {}
            dataset = CopyPaste(dataset, backgrounds, seed=config.seed, config=CopyPasteConfig(**options))
        if source.scale_jitter:
            options = source.scale_jitter if isinstance(source.scale_jitter, dict) else {}
            flip = 0.0 if source.object_crops else source.flip  # mirrored once, by the outermost view
            dataset = ScaleJitter(dataset, seed=config.seed, config=ScaleJitterConfig(**options), flip=flip)
        if source.object_crops:
            options = source.object_crops if isinstance(source.object_crops, dict) else {}
            dataset = ObjectCrops(
                dataset, seed=config.seed, config=ObjectCropConfig(**options), flip=source.flip
            )
        datasets.append(dataset)
    first = config.data[0]
    plain = not (first.copy_paste or first.scale_jitter or first.object_crops)
    if len(datasets) == 1 and plain:
        return datasets[0]
    return Mixture(datasets, [source.weight for source in config.data], seed=config.seed)


class Trainer:
    """Trains ``model`` (default: :func:`build_model`) on ``data`` (default: the configured datasets)."""

    def __init__(
        self,
        config: TrainConfig,
        model: Sam | None = None,
        data: Sequence[Scene] | None = None,
        hooks: Sequence[Hook] = (),
    ) -> None:
        self.config = config
        self.info = distributed.process_info()
        self.device = distributed.device_for(self.info, config.device)
        distributed.init_process_group(self.info, self.device)
        torch.manual_seed(config.seed)

        self.model = (model if model is not None else build_model(config)).to(self.device).train()
        freeze(self.model, config.freeze)
        set_drop_path(self.model, config.drop_path)
        self.text_encoder = open_text_encoder(config, self.model, self.device)
        text_probability = config.text.probability if config.text is not None else 0.0
        self.loss = InteractiveLoss(
            self.model,
            config.simulation,
            text_probability,
            config.mask_loss,
            config.iou_loss_weight,
            config.iou_rank_weight,
        )
        self.step_module: torch.nn.Module = self.loss
        if self.info.distributed:
            # Some parameters get no gradient in a given step (e.g. the multimask tokens when every
            # mask starts from a box), hence find_unused_parameters.
            self.step_module = DistributedDataParallel(
                self.loss,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        self.optimizer = build_optimizer(
            self.model,
            config.lr,
            config.weight_decay,
            config.layer_decay,
            tuple(config.betas),
            rate_scales={part: config.new_parts_lr_scale for part in config.new_parts},
        )
        self.scheduler = build_scheduler(
            self.optimizer, config.warmup_steps, config.milestone_steps(), config.gamma
        )
        self.dtype = _training_dtype(config.precision, self.device)
        low_res = 4 * self.model.config.encoder.embedding_grid if self.model.config else 256
        self.batches = StepBatches(
            data if data is not None else open_training_data(config),
            seed=config.seed,
            batch_size=config.batch_size,
            grad_accum=config.grad_accum,
            info=self.info,
            img_size=self.model.img_size,
            low_res=low_res,
            mask_filter=MaskFilter(config.masks_per_image, config.max_mask_area),
            crop_size=self.text_encoder.image_size if self.text_encoder is not None else None,
            coverage=config.soft_targets,
        )
        self.out_dir = Path(config.out_dir)
        self.hooks: list[Hook] = [log_hook, *hooks]
        self.step = 0

    # --- The loop ---------------------------------------------------------------------------------

    def resume(self, path: Path | None = None) -> bool:
        """Continue from ``path`` (default ``OUT_DIR/last.pt``, else the config's ``progress`` file) if it
        exists, on this config's learning-rate schedule (so raising ``steps`` extends a run); returns
        whether it did. From a progress file the optimiser's moments start afresh."""
        path = path or self.out_dir / LAST_STATE
        config = self.config
        if path.exists():
            self.step = load_training_state(path, self.model, self.optimizer, self.scheduler).step
        elif config.progress is not None and Path(config.progress).exists():
            self.step = load_progress(Path(config.progress), self.model).step
            self.scheduler.last_epoch = self.step
        else:
            return False
        reschedule(self.scheduler, config.warmup_steps, config.milestone_steps(), config.gamma)
        return True

    def run(self, stop_after: int | None = None) -> TrainResult:
        """Train until ``config.steps`` (or ``stop_after`` more steps, or ``max_minutes``) and save."""
        config = self.config
        start = time.monotonic()
        last: dict[str, float] = {}
        stopped_early = False
        end = config.steps if stop_after is None else min(config.steps, self.step + stop_after)
        while self.step < end:
            figures = self.train_step(self.step)
            self.step += 1
            last = figures
            for hook in self.hooks:
                hook(self, self.step, figures)
            if self.step % config.save_every == 0:
                self.save()
            if config.max_minutes is not None and time.monotonic() - start > 60 * config.max_minutes:
                stopped_early = self.step < config.steps
                break
        self.save(final=self.step >= config.steps or stopped_early)
        return TrainResult(step=self.step, stopped_early=stopped_early, last_log=last)

    def train_step(self, step: int) -> dict[str, float]:
        """One optimiser step; returns the step's mean loss parts (averaged over processes)."""
        figures = self.accumulate_gradients(step)
        if self.config.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        figures["lr"] = self.optimizer.param_groups[-1]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return figures

    def accumulate_gradients(self, step: int) -> dict[str, float]:
        """Forward and backward over the step's micro-batches, leaving the (process-averaged) mean
        gradient in ``.grad``; returns the mean loss parts."""
        config = self.config
        generator = torch.Generator(device=self.device)
        generator.manual_seed(_step_seed(config.seed, step, self.info.rank))
        totals: dict[str, torch.Tensor] = {}
        for micro in range(config.grad_accum):
            batch = self.batches.get(step, micro).to(self.device)
            if self.text_encoder is not None and batch.crops is not None:
                with torch.no_grad():  # the encoder is frozen: its embeddings are inputs, as in D.5
                    batch = batch.with_text(self.text_encoder.encode_images(batch.crops.float()))
            sync = contextlib.nullcontext()
            if isinstance(self.step_module, DistributedDataParallel) and micro < config.grad_accum - 1:
                sync = self.step_module.no_sync()  # average gradients once, after the last micro-batch
            with sync:
                with compute_context(self.device, self.dtype):
                    loss, parts = self.step_module(batch, generator)
                (loss / config.grad_accum).backward()
            parts["loss"] = loss.detach()
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + value.detach().float().cpu() / config.grad_accum
        return {key: float(distributed.average(value, self.info)) for key, value in totals.items()}

    # --- Saving -----------------------------------------------------------------------------------

    def save(self, final: bool = False) -> None:
        """Write ``last.pt`` (resumable) and, at the end, ``model.safetensors`` (for ``build_sam``)."""
        if not self.info.is_main:
            return
        save_training_state(
            self.out_dir / LAST_STATE,
            self.model,
            self.optimizer,
            self.scheduler,
            self.step,
            self.config.to_dict(),
        )
        if self.config.progress is not None:
            save_progress(Path(self.config.progress), self.model, self.step)
        if final:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            save_checkpoint(self.model, self.out_dir / FINAL_WEIGHTS, config=self.model.config)

    def close(self) -> None:
        distributed.shutdown()


def log_hook(trainer: Trainer, step: int, figures: dict[str, float]) -> None:
    """Append the step's figures to ``OUT_DIR/log.jsonl`` every ``log_every`` steps (main process)."""
    if not trainer.info.is_main or (step % trainer.config.log_every and step != trainer.config.steps):
        return
    trainer.out_dir.mkdir(parents=True, exist_ok=True)
    with open(trainer.out_dir / LOG_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps({"step": step, **{k: round(v, 6) for k, v in figures.items()}}) + "\n")


def _step_seed(seed: int, step: int, rank: int) -> int:
    # Distinct, well-spread seeds for every (seed, step, rank).
    return (seed * 1_000_003 + step) * 4099 + rank


def _training_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.bfloat16 if bf16_is_fast(device) else torch.float32
    return resolve_dtype(precision)
