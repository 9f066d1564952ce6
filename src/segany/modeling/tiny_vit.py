"""TinyViT image encoder of MobileSAM (``vit_t``): a drop-in for SAM's ViT at a tenth of the cost.

Frames: like :class:`ImageEncoderViT`, it takes a normalised, padded ``B x 3 x S x S`` image
(``S = img_size``, 1024 for the published model) and returns ``B x out_chans x S/16 x S/16`` embeddings
(256 x 64 x 64). Resolutions at 1024 input: stem 256, MBConv stage 256 -> merge -> 128, attention
stages at 128, 64 and 64. Module names follow MobileSAM's checkpoint (``patch_embed.seq``,
``layers.i.blocks.j``, ``layers.i.downsample``, ``norm_head``, ``head``, ``neck``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .layers import LayerNorm2d
from .tiny_vit_blocks import ConvBN, MBConv, PatchMerging, TinyViTBlock


class PatchEmbed(nn.Module):
    """Convolutional stem: two stride-2 3x3 conv+BN with GELU between; ``B x 3 x S x S`` -> ``B x C x S/4 x S/4``."""

    def __init__(self, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.seq = nn.Sequential(
            ConvBN(in_chans, embed_dim // 2, kernel_size=3, stride=2),
            nn.GELU(),
            ConvBN(embed_dim // 2, embed_dim, kernel_size=3, stride=2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.seq(x)


class ConvLayer(nn.Module):
    """The first stage: MBConv blocks, then the patch merging into the next stage (``B x C x H x W``)."""

    def __init__(self, dim: int, depth: int, expand_ratio: float, downsample: PatchMerging | None) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(MBConv(dim, expand_ratio) for _ in range(depth))
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x if self.downsample is None else self.downsample(x)


class BasicLayer(nn.Module):
    """An attention stage: TinyViT blocks on the channels-last grid, then the optional patch merging.

    Takes and returns ``B x C x H x W``.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        mlp_ratio: float,
        local_conv_size: int,
        downsample: PatchMerging | None,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TinyViTBlock(dim, num_heads, window_size, mlp_ratio, local_conv_size) for _ in range(depth)
        )
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        x = x.permute(0, 3, 1, 2)
        return x if self.downsample is None else self.downsample(x)


class TinyViT(nn.Module):
    """Stem, one MBConv stage, attention stages, and SAM's conv neck to ``out_chans`` channels."""

    def __init__(
        self,
        img_size: int = 1024,
        in_chans: int = 3,
        embed_dims: Sequence[int] = (64, 128, 160, 320),
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (2, 4, 5, 10),
        window_sizes: Sequence[int] = (7, 7, 14, 7),
        mlp_ratio: float = 4.0,
        mbconv_expand_ratio: float = 4.0,
        local_conv_size: int = 3,
        out_chans: int = 256,
        num_classes: int = 1000,
    ) -> None:
        """
        Args:
            embed_dims, depths, num_heads, window_sizes: one entry per stage (see
                :class:`segany.config.TinyViTConfig`); stage 0 is convolutional.
            num_classes: size of TinyViT's ImageNet head, unused here but part of the published
                checkpoint (0: no linear head).
        """
        super().__init__()
        self.img_size = img_size
        stages = len(embed_dims)
        self.patch_embed = PatchEmbed(in_chans, embed_dims[0])
        layers: list[nn.Module] = []
        for i in range(stages):
            downsample = None
            if i < stages - 1:
                # The merge into the last stage keeps the resolution, so the grid ends at img_size / 16.
                stride = 1 if i == stages - 2 else 2
                downsample = PatchMerging(embed_dims[i], embed_dims[i + 1], stride)
            if i == 0:
                layers.append(ConvLayer(embed_dims[0], depths[0], mbconv_expand_ratio, downsample))
            else:
                layers.append(
                    BasicLayer(
                        embed_dims[i],
                        depths[i],
                        num_heads[i],
                        window_sizes[i],
                        mlp_ratio,
                        local_conv_size,
                        downsample,
                    )
                )
        self.layers = nn.ModuleList(layers)
        # TinyViT's classifier: no part of SAM's forward; present so checkpoint keys match.
        self.norm_head = nn.LayerNorm(embed_dims[-1])
        self.head = nn.Linear(embed_dims[-1], num_classes) if num_classes > 0 else nn.Identity()
        self.neck = nn.Sequential(
            nn.Conv2d(embed_dims[-1], out_chans, kernel_size=1, bias=False),
            LayerNorm2d(out_chans),
            nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
            LayerNorm2d(out_chans),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``B x 3 x S x S`` normalised image -> ``B x out_chans x S/16 x S/16`` embedding."""
        x = self.patch_embed(x)
        for layer in self.layers:
            x = layer(x)
        return self.neck(x)
