"""An EfficientNet-Lite image encoder for small SAMs: timm's backbone and a feature-pyramid neck.

EfficientNet-Lite (Tan & Le, 2019; the "Lite" variants drop squeeze-and-excitation and use ReLU6, so
they run well on CPUs) gives features at strides 8, 16 and 32. The neck is a feature pyramid (Lin et al.,
2017): 1x1 lateral projections to ``neck_dim`` channels, a top-down path (nearest upsampling and sums)
down to ``out_stride``, then SAM's neck shape (3x3 conv, LayerNorm2d, 1x1 conv, LayerNorm2d) to
``out_chans`` channels, so the decoder sees the same kind of ``B x C x g x g`` embedding as from a ViT.
With ``detail_skips`` (``out_stride`` 16 only), the backbone's stride-8 and stride-4 features are also
projected by 1x1 convolutions to ``C/4`` and ``C/8`` channels and carried in the embedding for the
decoder's upscaling (:mod:`.detail`): ``B x 4C x g x g``. The projections start at zero, so a model
given them starts with the masks of the same model without.

Batch normalisation keeps the statistics it was built or loaded with (ImageNet's when pretrained): in
training mode its running statistics are frozen, since a training batch of two images would give noisy
ones; its affine parameters still learn.

Speed: convolutions run on channels-last inputs (oneDNN's native layout; on this project's AVX-512 CPU
the backbone's forward and backward on 2 x 512-px images take 429 ms instead of 550 ms). In inference
(eval mode, no gradients) the backbone runs as a copy with each batch normalisation folded into the
convolution before it (an affine map after a linear one is linear), made on first use and remade when a
weight changes: with channels-last inputs a 512-px photo takes 25 ms instead of 72 ms on 2 threads;
outputs agree to about 1e-5.
"""

from __future__ import annotations

import copy
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import recording
from .detail import pack_detail
from .layers import LayerNorm2d
from .versions import contents_key

# The backbone's feature levels the neck reads (timm ``out_indices``): strides 8, 16 and 32.
PYRAMID_LEVELS = (2, 3, 4)
PYRAMID_STRIDES = (8, 16, 32)
# With detail skips the stride-4 level too.
DETAIL_LEVELS = (1, *PYRAMID_LEVELS)


class EfficientNetLiteEncoder(nn.Module):
    """``B x 3 x S x S`` normalised images -> ``B x out_chans x S/out_stride x S/out_stride`` embeddings
    (``B x 4 out_chans x ...`` with ``detail_skips``)."""

    def __init__(
        self,
        img_size: int = 512,
        variant: str = "efficientnet_lite0",
        out_stride: int = 16,
        neck_dim: int = 128,
        out_chans: int = 256,
        detail_skips: bool = False,
    ) -> None:
        super().__init__()
        import timm  # imported here: only models of this kind need it

        self.img_size = img_size
        self.out_stride = out_stride
        # pretrained=False: never a download; ImageNet weights come from segany.training.pretrained.
        self.detail_skips = detail_skips
        self.backbone = timm.create_model(
            variant,
            pretrained=False,
            features_only=True,
            out_indices=DETAIL_LEVELS if detail_skips else PYRAMID_LEVELS,
        )
        channels = self.backbone.feature_info.channels()
        if detail_skips:
            self.detail4 = nn.Conv2d(channels[0], out_chans // 8, kernel_size=1)
            self.detail8 = nn.Conv2d(channels[1], out_chans // 4, kernel_size=1)
            for conv in (self.detail4, self.detail8):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
            channels = channels[1:]
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

    # The folded inference copy of the backbone and the weights' keys it was made from (not a submodule:
    # it is derived, never saved).
    _folded: tuple[tuple, nn.Module] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        folding = not (self.training or torch.is_grad_enabled() or recording())
        backbone = self._inference_backbone() if folding else self.backbone
        features = backbone(x)
        stride4 = features.pop(0) if self.detail_skips else None
        stride8 = features[0]
        features = [f for f, s in zip(features, PYRAMID_STRIDES, strict=True) if s >= self.out_stride]
        # Top-down: start at the coarsest level, upsample and add each finer lateral.
        fused = self.lateral[-1](features[-1])
        for lateral, feature in zip(self.lateral[-2::-1], features[-2::-1], strict=True):
            fused = lateral(feature) + F.interpolate(fused, size=feature.shape[-2:], mode="nearest")
        embedding = self.neck(fused)
        if stride4 is None:
            return embedding
        return pack_detail(embedding, self.detail8(stride8), self.detail4(stride4))

    def _inference_backbone(self) -> nn.Module:
        """The backbone with batch norms folded into their convolutions, cached against its weights."""
        tensors = [*self.backbone.parameters(), *self.backbone.buffers()]
        keys = tuple(contents_key(t) for t in tensors)
        if None in keys:  # inference tensors carry no version: fold afresh, keep nothing
            return fold_batch_norms(self.backbone)
        if self._folded is None or self._folded[0] != keys:
            self._folded = (keys, fold_batch_norms(self.backbone))
        return self._folded[1]

    def train(self, mode: bool = True) -> EfficientNetLiteEncoder:
        super().train(mode)
        for module in self.backbone.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()  # frozen statistics (see the module docstring)
        return self


@torch.no_grad()
def fold_batch_norms(module: nn.Module) -> nn.Module:
    """An inference copy of ``module`` in which each batch norm that directly follows a convolution (the
    next child of the same parent, as in timm's EfficientNet blocks) is folded into that convolution.

    With ``s = gamma / sqrt(var + eps)``, ``BN(conv(x)) = conv'(x)`` for ``W' = W s`` (per output channel)
    and ``b' = (b - mean) s + beta``. A timm ``BatchNormAct2d`` keeps its activation (and dropout). Norms
    that follow no convolution stay as they are. ``module`` itself is not changed.
    """
    folded = copy.deepcopy(module).eval()
    for parent in list(folded.modules()):
        children = list(parent.named_children())
        for (_, conv), (name, norm) in itertools.pairwise(children):
            if (
                type(conv) is not nn.Conv2d
                or not isinstance(norm, nn.BatchNorm2d)
                or not norm.track_running_stats
            ):
                continue
            weight = norm.weight if norm.affine else torch.ones_like(norm.running_var)
            shift = norm.bias if norm.affine else torch.zeros_like(norm.running_mean)
            scale = weight / torch.sqrt(norm.running_var + norm.eps)
            bias = conv.bias if conv.bias is not None else torch.zeros_like(scale)
            conv.weight = nn.Parameter(conv.weight * scale[:, None, None, None], requires_grad=False)
            conv.bias = nn.Parameter((bias - norm.running_mean) * scale + shift, requires_grad=False)
            after = [m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if m is not None]
            setattr(parent, name, nn.Sequential(*after) if after else nn.Identity())
    return folded
