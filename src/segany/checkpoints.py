"""Reading, checking, converting and writing SAM checkpoints.

Supported inputs: official ``.pth`` state dicts (``sam_vit_*_*.pth`` and MobileSAM's ``mobile_sam.pt``,
loaded unchanged), ``.safetensors`` (segany writes its :class:`SamConfig` into the metadata), segany
``.pth`` files that wrap a state dict with its config, training checkpoints (``{"model": state_dict,
...}``) and Hugging Face ``transformers`` SAM checkpoints (``facebook/sam-vit-*``: ``model.safetensors``
or ``pytorch_model.bin``), whose keys are converted to the official names by :func:`convert_hf_state_dict`.

Every failure raises :class:`CheckpointError` with one sentence a user can act on.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

from .config import EfficientNetLiteConfig, EncoderConfig, ImageEncoderConfig, SamConfig, TinyViTConfig
from .errors import CheckpointError
from .files import atomic_write
from .variants import VARIANTS, variant_of

StateDict = dict[str, torch.Tensor]

SAM_PREFIXES = ("image_encoder.", "prompt_encoder.", "mask_decoder.")
CONFIG_METADATA_KEY = "segany_config"
_WRAPPER_KEYS = ("model", "state_dict", "model_state_dict")


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[StateDict, SamConfig | None]:
    """Read a checkpoint file into an official-layout state dict and the config it carries, if any."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"Checkpoint not found: {path}; check the path, or fetch an official one with `segany download vit_b`."
        )
    if path.is_dir():
        raise CheckpointError(
            f"Checkpoint path {path} is a directory; give the .pth or .safetensors file inside it."
        )
    if path.suffix == ".safetensors":
        raw, config = _read_safetensors(path)
    else:
        raw, config = _read_torch(path)
    state_dict = _unwrap(raw, path)
    if _is_hf_layout(state_dict):
        state_dict = convert_hf_state_dict(state_dict)
    if not any(key.startswith(SAM_PREFIXES) for key in state_dict):
        first = ", ".join(list(state_dict)[:3]) or "none"
        raise CheckpointError(
            f"{path} is not a SAM checkpoint: none of its {len(state_dict)} tensors belong to SAM (first keys: {first})."
        )
    return state_dict, config


class UnreadableSafetensors(ValueError):
    """A file that is not a readable safetensors file; the message is the reader's reason, one line."""


def read_safetensors(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors and the string metadata of the safetensors file ``path`` (on the CPU).

    Raises:
        UnreadableSafetensors: the file is truncated, corrupt or not safetensors at all (callers say in
            their own words what the file should have been).
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except Exception as exc:  # safetensors raises its own error types for every malformed file
        raise UnreadableSafetensors(_short(exc)) from exc
    return tensors, dict(metadata)


def _read_safetensors(path: Path) -> tuple[dict[str, object], SamConfig | None]:
    try:
        tensors, metadata = read_safetensors(path)
    except UnreadableSafetensors as exc:
        raise CheckpointError(
            f"Checkpoint {path} is truncated or corrupt (not a readable safetensors file: {exc}); download it again."
        ) from exc
    config = None
    if CONFIG_METADATA_KEY in metadata:
        config = _parse_config(metadata[CONFIG_METADATA_KEY], path)
    return dict(tensors), config


def _read_torch(path: Path) -> tuple[object, SamConfig | None]:
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "unsupported global" in str(exc).lower():
            raise CheckpointError(
                f"Checkpoint {path} holds pickled Python objects besides tensors, which segany refuses to load "
                "for safety (weights_only=True); re-save it as a plain state dict."
            ) from exc
        raise CheckpointError(
            f"Checkpoint {path} is truncated or corrupt, or no checkpoint at all (its pickle is unreadable); "
            "download it again, or give a .pth or .safetensors file of SAM weights."
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, UnicodeDecodeError) as exc:
        raise CheckpointError(
            f"Checkpoint {path} is truncated or corrupt ({_short(exc)}); download it again."
        ) from exc
    except (KeyError, IndexError, TypeError, AttributeError, struct.error) as exc:
        # torch.load's legacy reader on a file that is neither a zip archive nor a pickle (text, say).
        raise CheckpointError(
            f"{path} is not a PyTorch checkpoint (neither a zip archive nor a pickle); give a .pth or "
            ".safetensors file of SAM weights."
        ) from exc
    config = None
    if isinstance(data, Mapping) and CONFIG_METADATA_KEY in data:
        config = _parse_config(data[CONFIG_METADATA_KEY], path)
    return data, config


def _parse_config(value: object, path: Path) -> SamConfig:
    try:
        if isinstance(value, str):
            return SamConfig.from_json(value)
        if isinstance(value, Mapping):
            return SamConfig.from_dict(dict(value))
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"Checkpoint {path} carries an invalid segany config ({_short(exc)}).") from exc
    raise CheckpointError(
        f"Checkpoint {path} carries a segany config of unexpected type {type(value).__name__}."
    )


def _unwrap(data: object, path: Path) -> StateDict:
    """The state dict inside ``data``: itself, or under a ``model``/``state_dict`` key."""
    if isinstance(data, Mapping):
        for key in _WRAPPER_KEYS:
            if isinstance(data.get(key), Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not data:
        raise CheckpointError(
            f"{path} is not a SAM checkpoint: it holds a {type(data).__name__}, not a dictionary of tensors."
        )
    tensors = {str(k): v for k, v in data.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} is not a SAM checkpoint: it holds no tensors.")
    # Strip prefixes left by DataParallel / DDP / torch.compile wrappers.
    for prefix in ("module.", "_orig_mod."):
        if all(key.startswith(prefix) for key in tensors):
            tensors = {key[len(prefix) :]: value for key, value in tensors.items()}
    return tensors


# --- Hugging Face transformers layout --------------------------------------------------------------

_HF_RENAMES: list[tuple[str, str]] = [
    (r"^vision_encoder\.", "image_encoder."),
    (r"^image_encoder\.layers\.", "image_encoder.blocks."),
    (r"\.layer_norm(\d)\.", r".norm\1."),
    (r"^image_encoder\.patch_embed\.projection\.", "image_encoder.patch_embed.proj."),
    (r"^image_encoder\.neck\.conv1\.", "image_encoder.neck.0."),
    (r"^image_encoder\.neck\.norm1\.", "image_encoder.neck.1."),
    (r"^image_encoder\.neck\.conv2\.", "image_encoder.neck.2."),
    (r"^image_encoder\.neck\.norm2\.", "image_encoder.neck.3."),
    (r"^prompt_encoder\.point_embed\.", "prompt_encoder.point_embeddings."),
    (r"^prompt_encoder\.mask_embed\.conv1\.", "prompt_encoder.mask_downscaling.0."),
    (r"^prompt_encoder\.mask_embed\.norm1\.", "prompt_encoder.mask_downscaling.1."),
    (r"^prompt_encoder\.mask_embed\.conv2\.", "prompt_encoder.mask_downscaling.3."),
    (r"^prompt_encoder\.mask_embed\.norm2\.", "prompt_encoder.mask_downscaling.4."),
    (r"^prompt_encoder\.mask_embed\.conv3\.", "prompt_encoder.mask_downscaling.6."),
    (r"^mask_decoder\.transformer\.layer_norm_final_attn\.", "mask_decoder.transformer.norm_final_attn."),
    (r"^mask_decoder\.upscale_conv1\.", "mask_decoder.output_upscaling.0."),
    (r"^mask_decoder\.upscale_layer_norm\.", "mask_decoder.output_upscaling.1."),
    (r"^mask_decoder\.upscale_conv2\.", "mask_decoder.output_upscaling.3."),
]
_HF_POSITIONAL = (
    "shared_image_embedding.positional_embedding",
    "prompt_encoder.shared_embedding.positional_embedding",
)


def _is_hf_layout(state_dict: Mapping[str, torch.Tensor]) -> bool:
    return any(key.startswith(("vision_encoder.", "shared_image_embedding.")) for key in state_dict)


def convert_hf_state_dict(state_dict: Mapping[str, torch.Tensor]) -> StateDict:
    """Rename a ``transformers`` ``SamModel`` state dict to the official segment-anything key names.

    Besides plain renames (``vision_encoder.layers.N`` -> ``image_encoder.blocks.N``, ``layer_normN`` ->
    ``normN``, ``neck.conv1`` -> ``neck.0``, ...), the hypernetwork and IoU-head MLPs are renumbered
    (``proj_in``, ``layers.i``, ``proj_out`` -> ``layers.0``, ``layers.i+1``, ``layers.last``), and the
    shared random-Fourier matrix becomes ``prompt_encoder.pe_layer.positional_encoding_gaussian_matrix``.
    """
    out: StateDict = {}
    mlp_depths = _hf_mlp_depths(state_dict)
    for key, value in state_dict.items():
        if key in _HF_POSITIONAL:
            out["prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"] = value
            continue
        new = key
        for pattern, repl in _HF_RENAMES:
            new = re.sub(pattern, repl, new)
        mlp = re.match(r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(.+)$", new)
        if mlp:
            head, rest = mlp.groups()
            last = mlp_depths[head] - 1
            if rest.startswith("proj_in."):
                rest = "layers.0." + rest[len("proj_in.") :]
            elif rest.startswith("proj_out."):
                rest = f"layers.{last}." + rest[len("proj_out.") :]
            else:
                hidden = re.match(r"^layers\.(\d+)\.(.+)$", rest)
                if hidden:
                    rest = f"layers.{int(hidden.group(1)) + 1}.{hidden.group(2)}"
            new = f"{head}.{rest}"
        out[new] = value
    return out


def _hf_mlp_depths(state_dict: Mapping[str, torch.Tensor]) -> dict[str, int]:
    """Number of linear layers of each HF decoder MLP: proj_in + hidden layers + proj_out."""
    hidden: dict[str, set[int]] = {}
    for key in state_dict:
        match = re.match(
            r"^(mask_decoder\.(?:output_hypernetworks_mlps\.\d+|iou_prediction_head))\.(.+)$", key
        )
        if match:
            head, rest = match.groups()
            hidden.setdefault(head, set())
            layer = re.match(r"^layers\.(\d+)\.", rest)
            if layer:
                hidden[head].add(int(layer.group(1)))
    return {head: len(layers) + 2 for head, layers in hidden.items()}


# --- Configuration from shapes -----------------------------------------------------------------------


def infer_config(state_dict: Mapping[str, torch.Tensor], base: SamConfig | None = None) -> SamConfig:
    """The :class:`SamConfig` that fits the tensor shapes of an official-layout state dict.

    Values that shapes cannot tell (decoder head count, pixel statistics) come from ``base``
    (default: the official values).
    """
    base = base or SamConfig()
    if "image_encoder.backbone.conv_stem.weight" in state_dict:
        raise CheckpointError(
            "The checkpoint holds an EfficientNet-Lite SAM without its configuration; save such models as "
            ".safetensors (segany.save_checkpoint(model, 'm.safetensors', config=model.config))."
        )
    try:
        return _infer(state_dict, base)
    except (KeyError, IndexError, ValueError, ZeroDivisionError) as exc:
        raise CheckpointError(
            f"The checkpoint's tensors do not form a SAM model (missing or odd {exc})."
        ) from exc


def _count(state_dict: Mapping[str, torch.Tensor], prefix: str) -> int:
    indexes = {int(m.group(1)) for key in state_dict if (m := re.match(re.escape(prefix) + r"(\d+)\.", key))}
    return max(indexes) + 1 if indexes else 0


def _infer(sd: Mapping[str, torch.Tensor], base: SamConfig) -> SamConfig:
    if "image_encoder.patch_embed.seq.0.c.weight" in sd:
        encoder: EncoderConfig = _infer_tiny_vit(sd, base)
    else:
        encoder = _infer_vit(sd, base)
    dec = "mask_decoder."
    iou_depth = _count(sd, dec + "iou_prediction_head.layers.")
    text = sd.get("prompt_encoder.text_projection.0.weight")
    return base.replace(
        text_embed_dim=int(text.shape[1]) if text is not None else 0,
        encoder=encoder,
        prompt_embed_dim=int(sd["prompt_encoder.no_mask_embed.weight"].shape[1]),
        mask_in_chans=int(sd["prompt_encoder.mask_downscaling.3.weight"].shape[0]),
        decoder_depth=_count(sd, dec + "transformer.layers."),
        decoder_mlp_dim=int(sd[dec + "transformer.layers.0.mlp.lin1.weight"].shape[0]),
        num_multimask_outputs=int(sd[dec + "mask_tokens.weight"].shape[0]) - 1,
        iou_head_depth=iou_depth,
        iou_head_hidden_dim=int(sd[dec + "iou_prediction_head.layers.0.weight"].shape[0]),
    )


def _infer_vit(sd: Mapping[str, torch.Tensor], base: SamConfig) -> ImageEncoderConfig:
    """SAM's ViT encoder from the shapes of ``image_encoder.*`` tensors; what they cannot tell from ``base``."""
    enc = "image_encoder."
    default = base.encoder if isinstance(base.encoder, ImageEncoderConfig) else ImageEncoderConfig()
    proj = sd[enc + "patch_embed.proj.weight"]
    embed_dim, patch = int(proj.shape[0]), int(proj.shape[-1])
    depth = _count(sd, enc + "blocks.")
    use_rel_pos = enc + "blocks.0.attn.rel_pos_h" in sd
    grid = int(sd[enc + "pos_embed"].shape[1]) if enc + "pos_embed" in sd else default.embedding_grid
    num_heads, window, global_idx = default.num_heads, default.window_size, []
    if use_rel_pos:
        head_dim = int(sd[enc + "blocks.0.attn.rel_pos_h"].shape[1])
        num_heads = embed_dim // head_dim
        windows = set()
        for i in range(depth):
            length = int(sd[f"{enc}blocks.{i}.attn.rel_pos_h"].shape[0])
            if length == 2 * grid - 1:
                global_idx.append(i)
            else:
                windows.add((length + 1) // 2)
        if len(windows) > 1:
            raise ValueError(f"window sizes {sorted(windows)}")
        window = windows.pop() if windows else window
    else:
        global_idx = list(default.global_attn_indexes)
    return ImageEncoderConfig(
        img_size=grid * patch,
        patch_size=patch,
        embed_dim=embed_dim,
        depth=depth,
        num_heads=num_heads,
        mlp_ratio=int(sd[enc + "blocks.0.mlp.lin1.weight"].shape[0]) / embed_dim,
        out_chans=int(sd[enc + "neck.0.weight"].shape[0]),
        window_size=window,
        global_attn_indexes=tuple(global_idx),
        qkv_bias=enc + "blocks.0.attn.qkv.bias" in sd,
        use_abs_pos=enc + "pos_embed" in sd,
        use_rel_pos=use_rel_pos,
    )


def _infer_tiny_vit(sd: Mapping[str, torch.Tensor], base: SamConfig) -> TinyViTConfig:
    """MobileSAM's TinyViT encoder from tensor shapes.

    The first stage's heads and window size are unused (it has no attention) and the input size leaves
    no trace in the weights; those come from ``base`` when it is a TinyViT, else from the published model.
    """
    enc = "image_encoder."
    default = base.encoder if isinstance(base.encoder, TinyViTConfig) else TinyViTConfig()
    stages = _count(sd, enc + "layers.")
    dims = [int(sd[f"{enc}layers.{i}.downsample.conv1.c.weight"].shape[1]) for i in range(stages - 1)]
    dims.append(int(sd[enc + "neck.0.weight"].shape[1]))
    heads, windows = [default.num_heads[0]], [default.window_sizes[0]]
    for i in range(1, stages):
        biases = sd[f"{enc}layers.{i}.blocks.0.attn.attention_biases"]
        heads.append(int(biases.shape[0]))
        windows.append(math.isqrt(int(biases.shape[1])))
    first_attn = f"{enc}layers.1.blocks.0."
    head = sd.get(enc + "head.weight")
    return TinyViTConfig(
        img_size=default.img_size,
        embed_dims=tuple(dims),
        depths=tuple(_count(sd, f"{enc}layers.{i}.blocks.") for i in range(stages)),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=int(sd[first_attn + "mlp.fc1.weight"].shape[0]) / dims[1],
        mbconv_expand_ratio=int(sd[enc + "layers.0.blocks.0.conv1.c.weight"].shape[0]) / dims[0],
        local_conv_size=int(sd[first_attn + "local_conv.c.weight"].shape[-1]),
        out_chans=int(sd[enc + "neck.0.weight"].shape[0]),
        num_classes=int(head.shape[0]) if head is not None else 0,
    )


def describe(config: SamConfig) -> str:
    """A short name for a config: the variant name, or its main encoder dimensions."""
    name = variant_of(config)
    if name:
        return name
    e = config.encoder
    if isinstance(e, EfficientNetLiteConfig):
        return f"a custom {e.variant} model (out_stride={e.out_stride}, img_size={e.img_size})"
    if isinstance(e, TinyViTConfig):
        return f"a custom TinyViT model (embed_dims={e.embed_dims}, depths={e.depths}, img_size={e.img_size})"
    return f"a custom model (embed_dim={e.embed_dim}, depth={e.depth}, img_size={e.img_size})"


def _shape_signature(config: SamConfig) -> SamConfig:
    """``config`` without the fields tensor shapes cannot tell apart."""
    return config.replace(decoder_num_heads=0, pixel_mean=(0.0, 0.0, 0.0), pixel_std=(0.0, 0.0, 0.0))


def check_fits(checkpoint_config: SamConfig, requested: str, path: str | os.PathLike[str]) -> None:
    """Refuse a checkpoint of another variant than ``requested``, naming the variant it does fit."""
    signature = _shape_signature(checkpoint_config)
    if signature == _shape_signature(VARIANTS[requested]):
        return
    for name, config in VARIANTS.items():
        if signature == _shape_signature(config):
            raise CheckpointError(
                f"{path} is a {name} checkpoint, not {requested}; use model {name!r} (--model {name}) or omit the model name."
            )
    raise CheckpointError(
        f"{path} holds {describe(checkpoint_config)}, not {requested}; omit the model name to build the model it describes."
    )


def load_weights(model: torch.nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Load strictly, turning missing / unexpected keys and shape mismatches into one clear sentence."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} key(s) such as {', '.join(missing[:3])}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} key(s) such as {', '.join(unexpected[:3])}")
        raise CheckpointError(f"{source} does not match the model: {'; '.join(parts)}.")
    for key, value in state_dict.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{source} does not match the model: {key} has shape {tuple(value.shape)}, expected {tuple(own[key].shape)}."
            )
    model.load_state_dict(dict(state_dict), strict=True)


# --- Writing -------------------------------------------------------------------------------------------


def save_checkpoint(
    model: torch.nn.Module,
    path: str | os.PathLike[str],
    config: SamConfig | None = None,
    official_format: bool = True,
) -> Path:
    """Write ``model``'s weights to ``.safetensors`` (config in the metadata) or ``.pth``.

    A ``.pth`` is a plain state dict that the official package loads unchanged; with
    ``official_format=False`` it wraps the state dict with the config (``{"model": ..., "segany_config": ...}``).
    The file is written to a temporary name first and renamed, so a crash never leaves half a checkpoint.
    """
    path = Path(path)
    state_dict = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        metadata = {CONFIG_METADATA_KEY: config.to_json()} if config is not None else None
        return atomic_write(path, lambda tmp: save_file(state_dict, str(tmp), metadata=metadata))
    document = (
        state_dict
        if official_format or config is None
        else {"model": state_dict, CONFIG_METADATA_KEY: config.to_dict()}
    )
    return atomic_write(path, lambda tmp: torch.save(document, tmp))


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:160].rstrip(".")
