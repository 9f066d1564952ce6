"""The text-prompt options ``segment`` and ``auto`` share: a phrase and the encoder that embeds it."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..text.encoder import TextImageEncoder

# segany.text.clip.DEFAULT_CLIP_MODEL, written out because importing it would import torch at
# `segany --help` (a test checks that the two agree).
DEFAULT_CLIP_MODEL = "ViT-B-32"


def add_text_args(parser: argparse.ArgumentParser, text_help: str) -> argparse._ArgumentGroup:
    """``--text``, ``--text-encoder`` and ``--clip-model``, in a group the caller may add to."""
    group = parser.add_argument_group("text prompts (paper section 7.5)")
    group.add_argument("--text", default=None, metavar="PHRASE", help=text_help)
    group.add_argument(
        "--text-encoder",
        default=None,
        metavar="PATH",
        help="text-image encoder for --text: CLIP weights of open_clip (e.g. open_clip_pytorch_model.bin of "
        "laion/CLIP-ViT-B-32-laion2B-s34B-b79K on Hugging Face) or a segany text encoder (.safetensors)",
    )
    group.add_argument(
        "--clip-model",
        default=DEFAULT_CLIP_MODEL,
        metavar="NAME",
        help=f"open_clip architecture of the CLIP weights (default: {DEFAULT_CLIP_MODEL})",
    )
    return group


def check_text_args(args: argparse.Namespace) -> None:
    """One sentence for text options that cannot work together; before any model is loaded."""
    from ..errors import PromptError

    if args.text is None:
        if args.text_encoder is not None:
            raise PromptError("--text-encoder is used only with --text PHRASE; add the phrase or drop it.")
        return
    if not args.text.strip():
        raise PromptError("--text is empty; give a phrase such as --text 'red triangle'.")
    if args.text_encoder is None:
        raise PromptError(
            "--text needs --text-encoder PATH: CLIP weights (e.g. open_clip_pytorch_model.bin of "
            "laion/CLIP-ViT-B-32-laion2B-s34B-b79K) or a segany text encoder."
        )


def load_text_encoder_from_args(args: argparse.Namespace, device: torch.device) -> TextImageEncoder:
    """The encoder ``--text-encoder`` names, on ``device``."""
    from ..text.load import load_text_encoder

    return load_text_encoder(args.text_encoder, clip_model=args.clip_model, device=device)
