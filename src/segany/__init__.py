"""segany: Segment Anything (Kirillov et al., 2023) with the official API, checkpoints and numbers."""

from .build import build_sam, sam_from_config, sam_model_registry
from .checkpoints import read_checkpoint, save_checkpoint
from .config import ImageEncoderConfig, SamConfig
from .errors import CheckpointError, DownloadError, ImageError, ImageNotSetError, PromptError, SegAnyError
from .modeling import Sam
from .predictor import SamPredictor
from .prompts import PointLabel
from .transforms import ResizeLongestSide
from .variants import VARIANTS

__version__ = "0.1.0"

__all__ = [
    "VARIANTS",
    "CheckpointError",
    "DownloadError",
    "ImageEncoderConfig",
    "ImageError",
    "ImageNotSetError",
    "PointLabel",
    "PromptError",
    "ResizeLongestSide",
    "Sam",
    "SamConfig",
    "SamPredictor",
    "SegAnyError",
    "__version__",
    "build_sam",
    "read_checkpoint",
    "sam_from_config",
    "sam_model_registry",
    "save_checkpoint",
]
