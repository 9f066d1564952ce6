"""The data engine at dataset scale: automatic labelling (here or on Ray), its statistics, and
model-in-the-loop rounds (fine-tune on accumulated annotations, keep the model only if it improves).

Modules: ``sources`` (what to label), ``pipeline`` (one image), ``local`` and ``ray_runner`` (where),
``labelling`` (a resumable run), ``outputs`` (manifest, errors, runs), ``stats`` and ``plot``,
``datasets`` (annotation database and labelled folders as training data), ``split``, ``ledger``,
``round_config`` and ``rounds``. Public names are imported on first use; Ray only when a Ray run starts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "ImageItem": "sources",
    "LabelJob": "pipeline",
    "Labeller": "pipeline",
    "LabelResult": "pipeline",
    "ModelSpec": "pipeline",
    "RayOptions": "ray_runner",
    "LabelSummary": "labelling",
    "label_images": "labelling",
    "LabelStats": "stats",
    "collect_stats": "stats",
    "AnnotationDb": "datasets",
    "LabelledFolder": "datasets",
    "Ledger": "ledger",
    "RoundOptions": "round_config",
    "run_round": "rounds",
}

__all__ = [
    "AnnotationDb",
    "ImageItem",
    "LabelJob",
    "LabelResult",
    "LabelStats",
    "LabelSummary",
    "LabelledFolder",
    "Labeller",
    "Ledger",
    "ModelSpec",
    "RayOptions",
    "RoundOptions",
    "collect_stats",
    "label_images",
    "run_round",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'segany.engine' has no attribute {name!r}")


if TYPE_CHECKING:
    from .labelling import LabelSummary, label_images
    from .ledger import Ledger
    from .pipeline import LabelJob, Labeller, LabelResult, ModelSpec
    from .ray_runner import RayOptions
    from .round_config import RoundOptions
    from .rounds import run_round
    from .sources import ImageItem
    from .stats import LabelStats, collect_stats
    from .training_views import AnnotationDb, LabelledFolder
