"""Automatic mask generation ("segment everything").

The generator is imported on first use, so the CLI can read :class:`GeneratorConfig` without torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import GeneratorConfig

__all__ = ["GeneratorConfig", "SamAutomaticMaskGenerator"]


def __getattr__(name: str) -> Any:
    if name == "SamAutomaticMaskGenerator":
        from .generator import SamAutomaticMaskGenerator

        return SamAutomaticMaskGenerator
    raise AttributeError(f"module 'segany.automatic' has no attribute {name!r}")


if TYPE_CHECKING:
    from .generator import SamAutomaticMaskGenerator
