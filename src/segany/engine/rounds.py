"""One model-in-the-loop round: fine-tune on the accumulated annotations, keep the model only if it measures
better on held-out images.

:func:`run_round`, step by step:

1. open each source: an annotation database (``.sqlite``, ``.sqlite3``, ``.db``: its accepted masks, images
   from ``images_dir``), an output folder of ``segany engine label`` (automatic masks), or anything
   ``open_dataset`` reads (an SA-1B folder with its images, COCO);
2. hold images out by name (:mod:`segany.engine.split`): ``holdout`` of them, and at least one image of the
   *evaluation sources*, the databases when any is given (human masks are the reference), else all;
3. evaluate the base checkpoint on the held-out images of the evaluation sources (box and click mIoU);
4. fine-tune from the base on the other images of every source (mixed with equal weight) with
   :data:`TRAIN_DEFAULTS`, overridden by a TOML of ``TrainConfig`` settings; the trainer writes
   ``ROUND_DIR/model.safetensors`` (and ``last.pt``, so a killed round resumes its training);
5. evaluate that checkpoint the same way; the round *improved* when its ``metric`` beats the base's by
   more than ``min_gain``;
6. write ``ROUND_DIR/round.json`` and append the same line to the ledger; ``current.json`` moves to the
   new checkpoint only if the round improved, otherwise the previous current checkpoint stays.

The ledger line: ``round``, ``time``, ``out``, ``base``, ``checkpoint`` (this round's), ``improved``,
``current`` (the current checkpoint after the round), ``metric``, ``min_gain``, ``before`` and ``after``
(``EvalResult.to_dict()``), ``data`` (per source: spec, kind, images and masks on each side) and
``train`` (steps, seconds, last logged losses, the settings).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError, SegAnyError
from ..formats.base import atomic_write_json
from ..training.datasets import SceneDataset, Subset
from .ledger import LEDGER, Ledger
from .outputs import MANIFEST, utc_now
from .round_config import RoundOptions, metric_of
from .split import Joined, held_out_names, split

ROUND_FILE = "round.json"
DB_SUFFIXES = (".sqlite", ".sqlite3", ".db")

# A short fine-tune: the image encoder frozen (cheap, and safe on a few hundred masks), a small learning
# rate, a short warm-up. A TOML given with --config overrides any of these and any other TrainConfig field.
TRAIN_DEFAULTS: dict[str, Any] = {
    "steps": 200,
    "warmup_steps": 20,
    "lr": 1e-5,
    "freeze": ["image_encoder"],
    "masks_per_image": 16,
    "log_every": 10,
    "save_every": 100,
}
# Set by the round itself, never by the TOML.
_ROUND_KEYS = ("data", "out_dir", "checkpoint", "model", "model_config")


@dataclass(frozen=True)
class Source:
    """One opened data source: its spec, its kind (``annotations``, ``labelled`` or ``dataset``), the data."""

    spec: str
    kind: str
    dataset: SceneDataset


def open_source(spec: str, images_dir: Path | None) -> Source:
    """The source ``spec`` names (see the module docstring, step 1)."""
    from ..training.datasets import open_dataset
    from .training_views import AnnotationDb, LabelledFolder

    path = Path(spec).expanduser()
    if path.suffix.lower() in DB_SUFFIXES:
        if images_dir is None:
            raise DatasetError(
                f"{spec} is an annotation database; give --images, the folder it was annotated in."
            )
        return Source(spec, "annotations", AnnotationDb(path, images_dir))
    if path.is_dir() and (path / MANIFEST).exists():
        return Source(spec, "labelled", LabelledFolder(path))
    return Source(spec, "dataset", open_dataset(spec))


def read_settings(path: Path) -> dict[str, Any]:
    """The ``TrainConfig`` settings of a ``.toml`` (or ``.json``) file, as plain values."""
    from ..training.train_config import read_config_file

    return read_config_file(path, "the round's training config")


def train_config(base: str, out_dir: Path, sources: list[Source], overrides: dict[str, Any]) -> Any:
    """The round's :class:`~segany.training.train_config.TrainConfig`: defaults, the TOML's settings, the round's."""
    from ..training.train_config import TrainConfigError, train_config_from_dict

    fixed = sorted(set(overrides) & set(_ROUND_KEYS))
    if fixed:
        raise TrainConfigError(
            f"The round sets {', '.join(fixed)} itself; remove them from the round's training config."
        )
    values = {**TRAIN_DEFAULTS, **overrides}
    values.update(
        data=[{"spec": source.spec} for source in sources], out_dir=str(out_dir), checkpoint=str(base)
    )
    return train_config_from_dict(values)


def run_round(
    specs: list[str],
    out_dir: Path,
    base: str | None = None,
    images_dir: Path | None = None,
    ledger_path: Path | None = None,
    train_overrides: dict[str, Any] | None = None,
    options: RoundOptions | None = None,
    hooks: Sequence[Any] = (),
    progress: bool = False,
) -> dict[str, Any]:
    """Run one round (see the module docstring) and return its ledger line.

    Args:
        specs: the sources (databases, labelled folders, datasets).
        out_dir: the round's folder (``ROUND_DIR``).
        base: the checkpoint to start from; None: the ledger's current checkpoint.
        ledger_path: default ``ROUND_DIR/../ledger.jsonl``.
        train_overrides: ``TrainConfig`` settings over :data:`TRAIN_DEFAULTS` (the TOML's contents).
        hooks: training hooks (``segany.training.trainer.Hook``), e.g. a progress bar.
        progress: show progress bars over the evaluations.
    """
    options = options or RoundOptions()
    out_dir = Path(out_dir).resolve()
    ledger = Ledger(Path(ledger_path) if ledger_path else out_dir.parent / LEDGER)
    ledger.sync_pointer()
    if ledger.round_of(out_dir) is not None:
        raise SegAnyError(f"{out_dir} already holds a finished round (see {ledger.path}); give a new --out.")
    previous = ledger.current()
    base = base or previous
    if base is None:
        raise SegAnyError(
            f"No --base given and {ledger.pointer} names no current checkpoint; pass --base CHECKPOINT."
        )
    base = str(Path(base).resolve())
    if not Path(base).is_file():
        raise SegAnyError(f"Base checkpoint {base} not found; check the path.")

    sources = [open_source(spec, images_dir) for spec in specs]
    evaluated = [s for s in sources if s.kind == "annotations"] or sources
    names = {s.dataset.name(i) for s in sources for i in range(len(s.dataset))}
    eval_names = {s.dataset.name(i) for s in evaluated for i in range(len(s.dataset))}
    if not eval_names:
        raise DatasetError(
            f"No annotated images in {', '.join(s.spec for s in evaluated)}; annotate some first."
        )
    held = held_out_names(names, options.holdout, must_cover=eval_names)
    parts = [split(s.dataset, held) for s in sources]
    train_parts = [train for train, _ in parts if len(train)]
    eval_parts = [test for s, (_, test) in zip(sources, parts, strict=True) if s in evaluated]
    if not train_parts:
        raise DatasetError(
            "Every image is held out, none is left to train on; add images or lower --holdout."
        )

    config = train_config(base, out_dir, sources, train_overrides or {})
    eval_data = Joined(eval_parts)
    before_model = _load(base, config.device)
    before = _evaluate(before_model, eval_data, options, progress)
    trained = _train(config, before_model, _mixture(train_parts, config.seed), hooks)
    checkpoint = out_dir / "model.safetensors"
    after = _evaluate(_load(str(checkpoint), config.device), eval_data, options, progress)

    before_figures, after_figures = before.to_dict(), after.to_dict()
    gain = metric_of(after_figures, options.metric) - metric_of(before_figures, options.metric)
    improved = gain > options.min_gain
    line = {
        "round": ledger.next_round(),
        "time": utc_now(),
        "out": str(out_dir),
        "base": base,
        "checkpoint": str(checkpoint),
        "improved": improved,
        "current": str(checkpoint) if improved else (previous or base),
        "metric": options.metric,
        "gain": gain,
        "min_gain": options.min_gain,
        "before": before_figures,
        "after": after_figures,
        "data": _data_counts(sources, parts, evaluated),
        "train": {**trained, "config": config.to_dict()},
    }
    atomic_write_json(out_dir / ROUND_FILE, line)
    ledger.append(line)
    return line


def _load(checkpoint: str, device: str | None) -> Any:
    from ..build import build_sam

    return build_sam(None, checkpoint=checkpoint, device=device)


def _evaluate(model: Any, scenes: SceneDataset, options: RoundOptions, progress: bool) -> Any:
    from ..predictor import SamPredictor
    from ..training.evaluate import evaluate

    return evaluate(SamPredictor(model.eval()), scenes, options.evaluation, progress=progress)


def _mixture(parts: list[Subset], seed: int) -> SceneDataset:
    from ..training.datasets import Mixture

    return parts[0] if len(parts) == 1 else Mixture(parts, [1.0] * len(parts), seed=seed)


def _train(config: Any, model: Any, data: SceneDataset, hooks: Sequence[Any]) -> dict[str, Any]:
    """Fine-tune ``model`` (resuming ``ROUND_DIR/last.pt`` when a killed round left one)."""
    from ..training.trainer import Trainer

    start = time.perf_counter()
    trainer = Trainer(config, model=model, data=data, hooks=hooks)
    try:
        trainer.resume()
        result = trainer.run()
    finally:
        trainer.close()
    return {
        "steps": result.step,
        "seconds": round(time.perf_counter() - start, 3),
        "last_log": result.last_log,
    }


def _data_counts(
    sources: list[Source], parts: list[tuple[Subset, Subset]], evaluated: list[Source]
) -> dict[str, Any]:
    """Images (and masks, where a source knows them without decoding) on each side, per source."""
    rows = []
    for source, (train, test) in zip(sources, parts, strict=True):
        local = Path(source.spec).expanduser()
        row: dict[str, Any] = {
            "spec": str(local.resolve()) if local.exists() else source.spec,
            "kind": source.kind,
            "evaluated": source in evaluated,
            "train_images": len(train),
            "held_out_images": len(test),
        }
        counts = getattr(source.dataset, "mask_counts", None)
        if counts is not None:
            row["train_masks"] = sum(counts[i] for i in train.indices)
            row["held_out_masks"] = sum(counts[i] for i in test.indices)
        rows.append(row)
    return {
        "sources": rows,
        "train_images": sum(r["train_images"] for r in rows),
        "held_out_images": sum(r["held_out_images"] for r in rows if r["evaluated"]),
    }
