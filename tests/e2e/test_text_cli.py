"""Text prompts through the command line: ``segany segment --text`` and ``segany auto --text``.

A tiny random SAM with a text path and a tiny random CLIP (open_clip architecture, saved as a weights
file) stand in for trained ones: the tests check what a user sees (files, sizes, JSON, that the phrase
changes the answer, one-line errors), not segmentation quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import segany
from segany.formats import read_sa1b
from support import TINY, TINY_CLIP_NAME, randomize_, tiny_clip
from support import run_cli as run

pytest.importorskip("open_clip")

WIDTH, HEIGHT = 160, 120


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A picture with a red square and a blue disk, SAM with and without a text path, tiny CLIP weights."""
    root = tmp_path_factory.mktemp("text-cli")
    image = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    image[20:60, 20:60] = (220, 30, 30)
    image[(yy - 70) ** 2 + (xx - 110) ** 2 < 25**2] = (30, 30, 220)
    Image.fromarray(image).save(root / "shapes.png")
    texty = randomize_(segany.sam_from_config(TINY.replace(text_embed_dim=32)), seed=3)
    segany.save_checkpoint(texty, root / "texty.safetensors", config=texty.config)
    segany.save_checkpoint(randomize_(segany.sam_from_config(TINY)), root / "plain.safetensors")
    clip, _ = tiny_clip(root / "clip")
    return {
        "image": root / "shapes.png",
        "texty": root / "texty.safetensors",
        "plain": root / "plain.safetensors",
        "clip": clip,
    }




def segment(files, out: Path, *extra) -> list:
    return [
        "segment",
        files["image"],
        "--checkpoint",
        files["texty"],
        "--device",
        "cpu",
        "--out",
        out,
        "--text-encoder",
        files["clip"],
        "--clip-model",
        TINY_CLIP_NAME,
        *extra,
    ]


def read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.format == "PNG" and img.size == (WIDTH, HEIGHT)
        return np.asarray(img)


def test_segment_by_text_alone_and_with_a_click(files, tmp_path, capsys) -> None:
    code, stdout, stderr = run(segment(files, tmp_path / "red.png", "--text", "red square"), capsys)
    assert (code, stderr) == (0, "")
    report = json.loads(stdout)
    assert report["text"] == "red square" and len(report["scores"]) == 3  # a phrase alone: 3 candidates
    red = read_mask(tmp_path / "red.png")
    assert set(np.unique(red)) <= {0, 255}

    code, stdout, _ = run(segment(files, tmp_path / "blue.png", "--text", "blue circle"), capsys)
    assert code == 0
    # Another phrase, another answer.
    assert json.loads(stdout)["scores"] != report["scores"]

    code, stdout, stderr = run(
        segment(
            files,
            tmp_path / "both.png",
            "--text",
            "red square",
            "--point",
            "40,40",
            "--overlay",
            tmp_path / "o.png",
        ),
        capsys,
    )
    assert (code, stderr) == (0, "")
    assert json.loads(stdout)["scores"] != report["scores"]
    read_mask(tmp_path / "both.png")
    assert (tmp_path / "o.png").exists()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--text-encoder": None}, "--text needs --text-encoder PATH"),
        ({"--text": None}, "--text-encoder is used only with --text PHRASE"),
        ({"--text": " "}, "--text is empty"),
        (
            {"--text-encoder": "{tmp}/missing.bin"},
            "missing.bin not found; download open_clip_pytorch_model.bin",
        ),
        ({"--clip-model": "ViT-Q-99"}, "Unknown CLIP model 'ViT-Q-99'"),
        ({"--clip-model": "ViT-B-32"}, "do not fit open_clip model ViT-B-32; pass --clip-model"),
        ({"--checkpoint": "{plain}"}, "This SAM model has no text prompt path"),
        ({"--text-encoder": "{texty}"}, "texty.safetensors do not fit open_clip model"),
    ],
)
def test_segment_text_errors_are_one_line(files, tmp_path, capsys, change, message) -> None:
    options = {
        "--checkpoint": files["texty"],
        "--text-encoder": files["clip"],
        "--clip-model": TINY_CLIP_NAME,
        "--text": "red square",
    }
    for key, value in change.items():
        options[key] = value.format(tmp=tmp_path, **files) if value is not None else None
    argv = ["segment", files["image"], "--device", "cpu", "--out", tmp_path / "m.png"]
    for key, value in options.items():
        if value is not None:
            argv += [key, value]
    code, stdout, stderr = run(argv, capsys)
    assert code == 1 and stdout == ""
    assert stderr.startswith("segany: error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr
    assert not (tmp_path / "m.png").exists()


def auto(files, out: Path, *extra) -> list:
    return [
        "auto",
        files["image"],
        "--out",
        out,
        "--checkpoint",
        files["plain"],  # ranking needs no text path in SAM: the encoder scores the masks' crops
        "--device",
        "cpu",
        "--points-per-side",
        "4",
        "--pred-iou-thresh",
        "0",
        "--stability-score-thresh",
        "0",
        "--box-nms-thresh",  # a random model's masks overlap a lot: keep them all
        "1",
        "--text-encoder",
        files["clip"],
        "--clip-model",
        TINY_CLIP_NAME,
        *extra,
    ]


def test_auto_writes_the_best_masks_for_a_phrase(files, tmp_path, capsys) -> None:
    # Without --text: every mask, for reference.
    code, _, _ = run(auto(files, tmp_path / "all")[:-4], capsys)
    assert code == 0
    _, every = read_sa1b(tmp_path / "all" / "shapes.json")
    assert len(every) > 3

    code, _, stderr = run(auto(files, tmp_path / "one", "--text", "red square"), capsys)
    assert code == 0, stderr
    info, best = read_sa1b(tmp_path / "one" / "shapes.json")
    assert (info["width"], info["height"]) == (WIDTH, HEIGHT) and len(best) == 1  # --top-k 1 by default
    assert best[0]["segmentation"] in [a["segmentation"] for a in every]
    scores = json.loads((tmp_path / "one" / "text_scores.json").read_text())
    assert scores["text"] == "red square" and len(scores["images"]["shapes.png"]) == 1

    code, _, _ = run(
        auto(files, tmp_path / "k", "--text", "red square", "--top-k", 3, "--format", "png"), capsys
    )
    assert code == 0
    masks = sorted((tmp_path / "k" / "shapes").glob("*.png"))
    assert [m.name for m in masks] == ["0.png", "1.png", "2.png"]
    assert read_mask(masks[0]).shape == (HEIGHT, WIDTH)
    top3 = json.loads((tmp_path / "k" / "text_scores.json").read_text())["images"]["shapes.png"]
    assert top3 == sorted(top3, reverse=True) and top3[0] == scores["images"]["shapes.png"][0]

    # Another phrase scores the masks differently.
    code, _, _ = run(auto(files, tmp_path / "blue", "--text", "blue circle", "--top-k", 3), capsys)
    assert code == 0
    blue = json.loads((tmp_path / "blue" / "text_scores.json").read_text())["images"]["shapes.png"]
    assert blue != top3

    # Resuming a folder with another phrase is refused; --overwrite starts over.
    code, _, stderr = run(auto(files, tmp_path / "one", "--text", "blue circle"), capsys)
    assert code == 1 and stderr.count("\n") == 1
    assert "holds masks chosen for --text 'red square'; pass --overwrite" in stderr
    code, _, _ = run(auto(files, tmp_path / "one", "--text", "blue circle", "--overwrite"), capsys)
    assert code == 0
    assert json.loads((tmp_path / "one" / "text_scores.json").read_text())["text"] == "blue circle"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--top-k", "2"], "--top-k picks masks by --text PHRASE"),
        (["--text", "red", "--top-k", "0"], "--top-k must be at least 1, got 0"),
        (["--text", "red", "--text-encoder", "nope.bin"], "nope.bin not found"),
    ],
)
def test_auto_text_errors_are_one_line(files, tmp_path, capsys, extra, message) -> None:
    argv = auto(files, tmp_path / "out")
    if "--text" not in extra:
        argv = argv[:-4]  # no --text-encoder either
    code, _, stderr = run([*argv, *extra], capsys)
    assert code == 1 and stderr.startswith("segany: error: ") and stderr.count("\n") == 1, stderr
    assert message in stderr


def test_the_cli_default_clip_model_is_load_clips() -> None:
    from segany.cli.text_options import DEFAULT_CLIP_MODEL
    from segany.text.clip import DEFAULT_CLIP_MODEL as LIBRARY_DEFAULT

    assert DEFAULT_CLIP_MODEL == LIBRARY_DEFAULT
