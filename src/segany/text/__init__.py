"""Text prompts (paper section 7.5, appendix D.5): text-image encoders and the crops they embed."""

from .crops import CropConfig, mask_crop, random_crop
from .encoder import TextImageEncoder

__all__ = ["CropConfig", "TextImageEncoder", "mask_crop", "random_crop"]
