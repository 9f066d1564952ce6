"""Automatic mask generation ("segment everything")."""

from .config import GeneratorConfig
from .generator import SamAutomaticMaskGenerator

__all__ = ["GeneratorConfig", "SamAutomaticMaskGenerator"]
