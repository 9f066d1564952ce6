"""Text prompts (paper section 7.5, appendix D.5): text-image encoders and the crops they embed."""

from .clip import ClipTextImageEncoder, load_clip
from .crops import CropConfig, mask_crop, random_crop
from .encoder import TextImageEncoder
from .load import check_pair, load_text_encoder
from .rerank import rank_by_text

__all__ = [
    "ClipTextImageEncoder",
    "CropConfig",
    "TextImageEncoder",
    "check_pair",
    "load_clip",
    "load_text_encoder",
    "mask_crop",
    "random_crop",
    "rank_by_text",
]
