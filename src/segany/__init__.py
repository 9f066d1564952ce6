"""segany: Segment Anything (Kirillov et al., 2023) with the official API, checkpoints and numbers.

Public names are imported on first use (PEP 562), so ``import segany`` and ``segany --help`` do not pay
for importing torch; ``from segany import SamPredictor`` works as usual.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .version import __version__

_EXPORTS: dict[str, str] = {
    "build_sam": "build",
    "sam_from_config": "build",
    "sam_model_registry": "build",
    "read_checkpoint": "checkpoints",
    "save_checkpoint": "checkpoints",
    "ImageEncoderConfig": "config",
    "SamConfig": "config",
    "TinyViTConfig": "config",
    "CheckpointError": "errors",
    "DownloadError": "errors",
    "ImageError": "errors",
    "ImageNotSetError": "errors",
    "PromptError": "errors",
    "SegAnyError": "errors",
    "Sam": "modeling",
    "SamPredictor": "predictor",
    "SamAutomaticMaskGenerator": "automatic",
    "GeneratorConfig": "automatic",
    "PointLabel": "prompts",
    "ResizeLongestSide": "transforms",
    "VARIANTS": "variants",
}

__all__ = [
    "VARIANTS",
    "CheckpointError",
    "DownloadError",
    "GeneratorConfig",
    "ImageEncoderConfig",
    "ImageError",
    "ImageNotSetError",
    "PointLabel",
    "PromptError",
    "ResizeLongestSide",
    "Sam",
    "SamAutomaticMaskGenerator",
    "SamConfig",
    "SamPredictor",
    "SegAnyError",
    "TinyViTConfig",
    "__version__",
    "build_sam",
    "read_checkpoint",
    "sam_from_config",
    "sam_model_registry",
    "save_checkpoint",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segany' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:
    from .automatic import GeneratorConfig, SamAutomaticMaskGenerator
    from .build import build_sam, sam_from_config, sam_model_registry
    from .checkpoints import read_checkpoint, save_checkpoint
    from .config import ImageEncoderConfig, SamConfig, TinyViTConfig
    from .errors import CheckpointError, DownloadError, ImageError, ImageNotSetError, PromptError, SegAnyError
    from .modeling import Sam
    from .predictor import SamPredictor
    from .prompts import PointLabel
    from .transforms import ResizeLongestSide
    from .variants import VARIANTS
