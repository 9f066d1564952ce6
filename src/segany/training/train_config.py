"""``TrainConfig``: everything a training run needs, read from one TOML (or JSON) file.

    out_dir = "runs/shapes"
    model = "vit_b"                  # a variant, or leave it out and give [model_config]
    checkpoint = "sam_vit_b.pth"     # optional: fine-tune from these weights
    freeze = ["image_encoder"]
    steps = 2000
    [[data]]
    spec = "synthetic:seed=1,count=100000,size=1024"
    weight = 3
    [[data]]
    spec = "coco/train2017"
    [text]                           # optional: crop embeddings as prompts (paper appendix D.5)
    encoder = "text_encoder.safetensors"
    probability = 0.5

Paths in the file are relative to the file. Defaults follow the paper where it gives a value.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import SamConfig
from ..errors import SegAnyError
from .interactive import SimulationConfig
from .text_config import TextPromptConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib


class TrainConfigError(SegAnyError, ValueError):
    """A training configuration file is missing, malformed or holds an unknown or invalid setting."""


@dataclass(frozen=True)
class DataSource:
    """A dataset (see ``segany.training.datasets.open_dataset``) and its share of the mix.

    ``copy_paste`` (``true`` or a table of ``CopyPasteConfig`` fields): the dataset's objects cut out and
    pasted onto ``backgrounds`` (another spec; synthetic backgrounds when None) with random scale,
    rotation, flip and colour jitter, giving endless new scenes. ``scale_jitter`` (``true`` or a table of
    ``ScaleJitterConfig`` fields): large-scale jitter of the scenes, applied last. ``object_crops``
    (``true`` or a table of ``ObjectCropConfig`` fields): object-centred views instead, as the zoom-in
    pass of a model with ``zoom_context`` sees them. ``flip``: the probability that a scene is mirrored
    left to right before its scale jitter or object crop (it needs one of them).
    """

    spec: str
    weight: float = 1.0
    copy_paste: bool | dict[str, Any] = False
    backgrounds: str | None = None
    scale_jitter: bool | dict[str, Any] = False
    object_crops: bool | dict[str, Any] = False
    flip: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.flip, bool) or not isinstance(self.flip, (int, float)) or not 0 <= self.flip <= 1:
            raise TrainConfigError(f"flip for {self.spec} is a probability in [0, 1], got {self.flip!r}.")
        if self.flip and not (self.scale_jitter or self.object_crops):
            raise TrainConfigError(
                f"flip for {self.spec} mirrors scenes before their scale jitter or object crop; "
                "add scale_jitter or object_crops to that [[data]] entry."
            )


@dataclass(frozen=True)
class TrainConfig:
    data: tuple[DataSource, ...]
    out_dir: str
    model: str | None = None  # a variant; None: from the checkpoint (its own architecture)
    model_config: SamConfig | None = None  # an explicit architecture instead of a variant
    checkpoint: str | None = None
    # Parts of the model absent from ``checkpoint`` that start from their fresh initialisation (name
    # prefixes, e.g. "prompt_encoder.text_projection" to add a text path to a model trained without).
    new_parts: tuple[str, ...] = ()
    # Factor on the learning rate of ``new_parts``: parts that start from zero in a fine-tuned model
    # may need a faster rate than the rest to matter within a short run.
    new_parts_lr_scale: float = 1.0
    freeze: tuple[str, ...] = ()
    # Start an EfficientNet-Lite encoder's backbone from ImageNet weights (segany.training.pretrained);
    # only for a model trained without a checkpoint.
    imagenet_encoder: bool = False
    # Schedule (in optimiser steps).
    steps: int = 90_000
    warmup_steps: int = 250
    milestones: tuple[float, ...] = (60_000 / 90_000, 86_666 / 90_000)  # fractions of ``steps``
    gamma: float = 0.1
    # Optimiser.
    lr: float = 8e-4
    weight_decay: float = 0.1
    layer_decay: float = 0.8
    betas: tuple[float, float] = (0.9, 0.999)
    drop_path: float = 0.0
    grad_clip: float | None = None
    # Batches: images per micro-batch per process, micro-batches per optimiser step.
    batch_size: int = 1
    grad_accum: int = 1
    masks_per_image: int = 64
    max_mask_area: float = 0.9
    mask_loss: str = "focal_dice"  # or "bce_dice" (segany.training.losses.MASK_LOSSES)
    iou_loss_weight: float = 1.0  # the IoU head's MSE next to the mask loss (the paper's: 1)
    iou_rank_weight: float = 0.0  # a ranking loss among a click's candidates (losses.iou_rank_loss)
    # Supervise each low-res cell with the share of it the mask covers instead of that share thresholded
    # at half, so the loss says where within a cell the boundary lies (segany.training.samples).
    soft_targets: bool = False
    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    text: TextPromptConfig | None = None  # the [text] section: crop embeddings as first prompts
    # Run.
    precision: str = "auto"  # float32, bfloat16, or auto (bfloat16 where it is fast)
    device: str | None = None
    seed: int = 0
    log_every: int = 10
    save_every: int = 500
    max_minutes: float | None = None  # stop (and save) after this long; resume continues
    # A small resumable state (float16 weights and the step, no optimiser moments) written at every save
    # beside OUT_DIR/last.pt, to keep in a repository between the sessions of a long run; --resume uses it
    # when OUT_DIR/last.pt is absent (a fresh machine).
    progress: str | None = None

    def __post_init__(self) -> None:
        _check_types(self)
        if not self.data:
            raise TrainConfigError("The training config names no data: add at least one [[data]] spec.")
        for name in ("steps", "batch_size", "grad_accum", "masks_per_image", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise TrainConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        if self.model is None and self.model_config is None and self.checkpoint is None:
            raise TrainConfigError(
                "Say what to train: model (a variant name), [model_config] or a checkpoint."
            )
        if self.precision not in ("auto", "float32", "bfloat16"):
            raise TrainConfigError(f"precision must be auto, float32 or bfloat16, got {self.precision!r}.")
        if self.mask_loss not in ("focal_dice", "bce_dice"):
            raise TrainConfigError(f"mask_loss must be focal_dice or bce_dice, got {self.mask_loss!r}.")
        for name in ("iou_loss_weight", "iou_rank_weight"):
            if getattr(self, name) < 0:
                raise TrainConfigError(f"{name} must be 0 or more, got {getattr(self, name)}.")
        if not 0 < self.max_mask_area <= 1:
            raise TrainConfigError(f"max_mask_area is a fraction in (0, 1], got {self.max_mask_area}.")
        if self.imagenet_encoder and self.checkpoint is not None:
            raise TrainConfigError(
                "imagenet_encoder starts a new model's encoder from ImageNet weights; with a checkpoint, drop it."
            )
        if self.new_parts_lr_scale <= 0:
            raise TrainConfigError(f"new_parts_lr_scale must be positive, got {self.new_parts_lr_scale}.")
        if self.new_parts and self.checkpoint is None:
            raise TrainConfigError(
                "new_parts names parts missing from a checkpoint: give the checkpoint too."
            )

    def milestone_steps(self) -> list[int]:
        return [round(fraction * self.steps) for fraction in self.milestones]

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        if self.model_config is not None:
            data["model_config"] = self.model_config.to_dict()
        return data

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def _check_types(config: TrainConfig) -> None:
    """Numbers, strings and flags must have their declared type (TOML keeps ``"fast"`` a string)."""
    hints = typing.get_type_hints(TrainConfig)
    for item in dataclasses.fields(config):
        value = getattr(config, item.name)
        hint = hints[item.name]
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            allowed = typing.get_args(hint)
        elif isinstance(hint, type):
            allowed = (hint,)
        else:
            continue  # tuples and nested configs are checked where they are built
        simple = [t for t in allowed if t in (int, float, str, bool, type(None))]
        if len(simple) != len(allowed):
            continue  # tuples and nested configs are checked where they are built
        if float in simple:
            simple.append(int)
        if (isinstance(value, bool) and bool not in simple) or not isinstance(value, tuple(simple)):
            names = " or ".join(t.__name__ if t is not type(None) else "nothing" for t in allowed)
            raise TrainConfigError(f"Invalid training config: {item.name} must be {names}, got {value!r}.")


def load_train_config(path: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """Read a ``.toml`` or ``.json`` training configuration; relative paths are made relative to it.

    ``overrides``: settings that replace the file's or fill in what it lacks (the command line's
    ``--out-dir``, ``--steps``...); their paths stay as given (relative to the working directory).
    """
    path = Path(path)
    return train_config_from_dict(
        read_config_file(path, "training config"), base=path.parent, overrides=overrides
    )


def read_config_file(path: str | Path, what: str) -> dict[str, Any]:
    """The plain values of a ``.json`` file, or of TOML otherwise; ``what`` names the file in errors."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise TrainConfigError(f"Cannot read {what} {path}: {exc.strerror or exc}.") from exc
    except UnicodeDecodeError as exc:
        raise TrainConfigError(
            f"{what[0].upper()}{what[1:]} {path} is not a text file; give a .toml or .json file."
        ) from exc
    try:
        values = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise TrainConfigError(
            f"{what[0].upper()}{what[1:]} {path} is not valid {path.suffix[1:] or 'TOML'}: {exc}."
        ) from exc
    if not isinstance(values, dict):
        raise TrainConfigError(
            f"{what[0].upper()}{what[1:]} {path} must hold settings by name (a JSON object), "
            f"got a {type(values).__name__}."
        )
    return values


def train_config_from_dict(
    raw: dict[str, Any], base: Path | None = None, overrides: Mapping[str, Any] | None = None
) -> TrainConfig:
    """Build a :class:`TrainConfig` from plain values; unknown keys are an error, not ignored.
    ``overrides``: see :func:`load_train_config`."""
    raw = dict(raw)
    for key in ("model_config", "simulation", "text"):  # tables of settings (None leaves the default)
        value = raw.get(key)
        if value is not None and not isinstance(value, (dict, SamConfig, SimulationConfig, TextPromptConfig)):
            raise TrainConfigError(
                f"Invalid training config: {key} must be a table of settings ([{key}]), got {value!r}."
            )
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise TrainConfigError(
            f"Unknown training setting(s) {', '.join(unknown)}; known ones are {', '.join(sorted(known))}."
        )
    try:
        sources = raw.pop("data", [])
        if isinstance(sources, (str, dict)):
            sources = [sources]
        raw["data"] = tuple(_data_source(source, base) for source in sources)
        if raw.get("model_config") is not None:
            raw["model_config"] = SamConfig.from_dict(raw["model_config"])
        if isinstance(raw.get("simulation"), dict):
            raw["simulation"] = SimulationConfig(**raw["simulation"])
        if isinstance(raw.get("text"), dict):
            text = dict(raw["text"])
            if isinstance(text.get("encoder"), str) and base is not None:
                text["encoder"] = os.path.normpath(base / Path(text["encoder"]).expanduser())
            raw["text"] = TextPromptConfig(**text)
        for key in ("freeze", "new_parts", "milestones", "betas"):
            if key in raw:
                raw[key] = (raw[key],) if isinstance(raw[key], (str, int, float)) else tuple(raw[key])
        for key in ("out_dir", "checkpoint", "progress"):
            if raw.get(key) is not None and base is not None:
                raw[key] = os.path.normpath(base / Path(raw[key]).expanduser())
        raw.update(overrides or {})
        if raw.get("out_dir") is None:
            raise TrainConfigError(
                'The training config names no out_dir; add out_dir = "runs/NAME" to it or pass --out-dir.'
            )
        return TrainConfig(**raw)
    except TrainConfigError:
        raise
    except (TypeError, KeyError, ValueError) as exc:
        raise TrainConfigError(f"Invalid training config: {exc}.") from exc


def _data_source(source: str | dict[str, Any], base: Path | None) -> DataSource:
    if isinstance(source, str):
        return DataSource(_resolve(source, base))
    source = dict(source)
    source["spec"] = _resolve(source["spec"], base)
    if source.get("backgrounds") is not None:
        source["backgrounds"] = _resolve(source["backgrounds"], base)
    _check_options(source, "copy_paste", "segany.training.copy_paste", "CopyPasteConfig")
    _check_options(source, "scale_jitter", "segany.training.scale_jitter", "ScaleJitterConfig")
    _check_options(source, "object_crops", "segany.training.object_crops", "ObjectCropConfig")
    return DataSource(**source)


def _check_options(source: dict[str, Any], key: str, module: str, name: str) -> None:
    """A table of augmentation options must build its config (so a typo fails before training)."""
    options = source.get(key)
    if not isinstance(options, dict):
        return
    import importlib

    config_type = getattr(importlib.import_module(module), name)
    try:
        config_type(**options)
    except TypeError as exc:
        raise TrainConfigError(f"Invalid {key} options for {source['spec']}: {exc}.") from exc


def _resolve(spec: str, base: Path | None) -> str:
    """Data specs that are relative paths are taken relative to the config file."""
    if base is None or ":" in spec.split("/")[0] or Path(spec).is_absolute():
        return spec
    return os.path.normpath(base / spec)
