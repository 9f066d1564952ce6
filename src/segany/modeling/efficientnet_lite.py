"""An EfficientNet-Lite image encoder for small SAMs: timm's backbone and a feature-pyramid neck.

EfficientNet-Lite (Tan & Le, 2019; the "Lite" variants drop squeeze-and-excitation and use ReLU6, so
they run well on CPUs) gives features at strides 8, 16 and 32. The neck is a feature pyramid (Lin et al.,
2017): 1x1 lateral projections to ``neck_dim`` channels, a top-down path (nearest upsampling and sums)
down to ``out_stride``, then SAM's neck shape (3x3 conv, LayerNorm2d, 1x1 conv, LayerNorm2d) to
``out_chans`` channels, so the decoder sees the same kind of ``B x C x g x g`` embedding as from a ViT.

Batch normalisation keeps the statistics it was built or loaded with (ImageNet's when pretrained): in
training mode its running statistics are frozen, since a training batch of two images would give noisy
ones; its affine parameters still learn.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .layers import LayerNorm2d

# The backbone's feature levels the neck reads (timm ``out_indices``): strides 8, 16 and 32.
PYRAMID_LEVELS = (2, 3, 4)
PYRAMID_STRIDES = (8, 16, 32)


class EfficientNetLiteEncoder(nn.Module):
    """``B x 3 x S x S`` normalised images -> ``B x out_chans x S/out_stride x S/out_stride`` embeddings."""

    def __init__(
        self,
        img_size: int = 512,
        variant: str = "efficientnet_lite0",
        out_stride: int = 16,
        neck_dim: int = 128,
        out_chans: int = 256,
    ) -> None:
        super().__init__()
        import timm  # imported here: only models of this kind need it

        self.img_size = img_size
        self.out_stride = out_stride
        # pretrained=False: never a download; ImageNet weights come from segany.training.pretrained.
        self.backbone = timm.create_model(
            variant, pretrained=False, features_only=True, out_indices=PYRAMID_LEVELS
        )
        channels = self.backbone.feature_info.channels()
        used = [s >= out_stride for s in PYRAMID_STRIDES]
        self.lateral = nn.ModuleList(
            nn.Conv2d(c, neck_dim, kernel_size=1) for c, keep in zip(channels, used, strict=True) if keep
        )
        self.neck = nn.Sequential(
            nn.Conv2d(neck_dim, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.backbone(x)
        features = [f for f, s in zip(features, PYRAMID_STRIDES, strict=True) if s >= self.out_stride]
        # Top-down: start at the coarsest level, upsample and add each finer lateral.
        fused = self.lateral[-1](features[-1])
        for lateral, feature in zip(self.lateral[-2::-1], features[-2::-1], strict=True):
            fused = lateral(feature) + F.interpolate(fused, size=feature.shape[-2:], mode="nearest")
        return self.neck(fused)

    def train(self, mode: bool = True) -> EfficientNetLiteEncoder:
        super().train(mode)
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()  # frozen statistics (see the module docstring)
        return self
