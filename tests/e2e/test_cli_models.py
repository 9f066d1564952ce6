"""How the command line finds and runs models: the downloaded official checkpoint, the precision flag."""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
from PIL import Image

import segany
from segany.cli import main
from segany.cli.common import load_model
from segany.download import checkpoint_path
from segany.variants import VARIANTS
from support import TINY, randomize_


def test_downloaded_official_checkpoint_is_used_without_checkpoint_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path))
    path = checkpoint_path("vit_b")
    path.parent.mkdir(parents=True)
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in segany.sam_from_config(VARIANTS["vit_b"]).state_dict().items()}
    # A real file in the official layout where `segany download vit_b` puts it (constant tensors, few bytes).
    torch.save({k: torch.full((1,), 0.5).expand(shape) for k, shape in shapes.items()}, path)
    args = argparse.Namespace(model="vit_b", checkpoint=None, device="cpu", precision="float32")
    model = load_model(args)
    assert model.config == VARIANTS["vit_b"]
    assert torch.all(model.image_encoder.pos_embed == 0.5)


def test_precision_flag(tmp_path, capsys):
    checkpoint = segany.save_checkpoint(
        randomize_(segany.sam_from_config(TINY), seed=3), tmp_path / "tiny.pth"
    )
    image = tmp_path / "img.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(image)
    scores = {}
    for precision in ("float32", "bfloat16"):
        out = tmp_path / f"{precision}.png"
        code = main(
            [
                "segment",
                str(image),
                "--point",
                "60,40",
                "--checkpoint",
                str(checkpoint),
                "--out",
                str(out),
                "--precision",
                precision,
            ]
        )
        assert code == 0
        scores[precision] = json.loads(capsys.readouterr().out)["scores"]
        assert Image.open(out).size == (128, 96)
    assert np.allclose(scores["float32"], scores["bfloat16"], atol=0.05)
