"""Pure ``nn.Module``s of SAM: no I/O, no predictor state."""

from .efficientnet_lite import EfficientNetLiteEncoder
from .image_encoder import ImageEncoderViT
from .layers import MLP, LayerNorm2d, MLPBlock
from .mask_decoder import MaskDecoder
from .mask_scorer import MaskScorer
from .prompt_encoder import PositionEmbeddingRandom, PromptEncoder
from .sam import Sam
from .tiny_vit import TinyViT
from .transformer import TwoWayTransformer

__all__ = [
    "MLP",
    "EfficientNetLiteEncoder",
    "ImageEncoderViT",
    "LayerNorm2d",
    "MLPBlock",
    "MaskDecoder",
    "MaskScorer",
    "PositionEmbeddingRandom",
    "PromptEncoder",
    "Sam",
    "TinyViT",
    "TwoWayTransformer",
]
