"""``segany auto`` end to end: a folder with good and broken files, every format, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

import segany
from segany.cli import main
from segany.formats import read_coco, read_png_folder, read_sa1b, read_yolo
from support import TINY, randomize_


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    torch.manual_seed(0)
    segany.save_checkpoint(randomize_(segany.sam_from_config(TINY), seed=2), path)
    return path


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "in"
    (root / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)).save(root / "a.png")
    Image.fromarray(rng.integers(0, 255, (120, 90, 3), dtype=np.uint8)).save(root / "sub" / "b.jpg")
    good = (root / "a.png").read_bytes()
    (root / "cut.png").write_bytes(good[: len(good) // 3])
    (root / "empty.jpg").write_bytes(b"")
    (root / "notes.jpg").write_text("not an image")
    (root / "readme.txt").write_text("ignored: not an image suffix")
    return root


def _auto(capsys, *args):
    code = main(
        [
            "auto",
            *map(str, args),
            "--points-per-side",
            "4",
            "--pred-iou-thresh",
            "0",
            "--stability-score-thresh",
            "0",
        ]
    )
    captured = capsys.readouterr()
    return code, captured.err


def test_folder_with_broken_files_then_resume(tmp_path, folder, checkpoint, capsys):
    out = tmp_path / "out"
    code, err = _auto(capsys, folder, "--out", out, "--checkpoint", checkpoint, "--overlay")
    assert code == 1  # some images failed, and the run says so
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("segany: skipped")]
    assert len(lines) == 3 and {line.split()[2].rstrip(":") for line in lines} == {
        "cut.png",
        "empty.jpg",
        "notes.jpg",
    }
    assert "5 images: 2 written" in err and "3 failed" in err
    info, annotations = read_sa1b(out / "a.json")
    assert (info["width"], info["height"], info["file_name"]) == (128, 96, "a.png")
    assert len(annotations) >= 1
    assert read_sa1b(out / "sub" / "b.json")[0]["height"] == 120
    assert Image.open(out / "overlays" / "a.png").size == (128, 96)

    before = (out / "a.json").stat().st_mtime_ns
    code, err = _auto(capsys, folder, "--out", out, "--checkpoint", checkpoint)
    assert "0 written" in err and "2 already done" in err
    assert (out / "a.json").stat().st_mtime_ns == before
    code, err = _auto(capsys, folder / "a.png", "--out", out, "--checkpoint", checkpoint, "--overwrite")
    assert code == 0 and "1 written" in err
    assert (out / "a.json").stat().st_mtime_ns != before


@pytest.mark.parametrize("fmt", ["coco", "png", "yolo"])
def test_other_formats(tmp_path, folder, checkpoint, capsys, fmt):
    out = tmp_path / fmt
    code, err = _auto(
        capsys, folder / "a.png", folder / "sub", "--out", out, "--format", fmt, "--checkpoint", checkpoint
    )
    assert code == 0, err
    if fmt == "coco":
        images = read_coco(out / "instances.json")
        assert [info["file_name"] for info, _ in images] == ["a.png", "b.jpg"]
        assert json.loads((out / "instances.json").read_text())["categories"][0]["name"] == "object"
    elif fmt == "png":
        records = read_png_folder(out / "a")
        assert records and records[0]["segmentation"].shape == (96, 128)
    else:
        masks = read_yolo(out / "a.txt", 96, 128)
        assert masks and all(m.shape == (96, 128) and m.any() for m in masks)


def test_bad_options_and_inputs(tmp_path, folder, checkpoint, capsys):
    code, err = _auto(
        capsys, folder, "--out", tmp_path / "o", "--checkpoint", checkpoint, "--box-nms-thresh", "2"
    )
    assert (
        code == 1 and err.strip() == "segany: error: Bad generator option: box_nms_thresh must lie in [0, 1]."
    )
    code, err = _auto(capsys, tmp_path / "missing", "--out", tmp_path / "o", "--checkpoint", checkpoint)
    assert code == 1 and "Input not found" in err
    (tmp_path / "nothing").mkdir()
    code, err = _auto(capsys, tmp_path / "nothing", "--out", tmp_path / "o", "--checkpoint", checkpoint)
    assert code == 1 and "No images" in err
    code, err = _auto(
        capsys, folder / "a.png", "--out", tmp_path / "o", "--checkpoint", checkpoint, "--max-pixels", "100"
    )
    assert code == 1 and "more than the limit of 100" in err
    with pytest.raises(SystemExit) as info:
        main(["auto", str(folder), "--out", str(tmp_path), "--points-per-side", "many"])
    assert info.value.code == 2


def test_auto_shares_the_engines_resumable_loop(tmp_path, folder, checkpoint, capsys):
    out = tmp_path / "out"
    code, _ = _auto(capsys, folder, "--out", out, "--checkpoint", checkpoint, "--format", "png")
    assert code == 1
    manifest = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert {(m["name"], m["status"]) for m in manifest} == {
        ("a.png", "ok"),
        ("sub/b.jpg", "ok"),
        ("cut.png", "error"),
        ("empty.jpg", "error"),
        ("notes.jpg", "error"),
    }
    assert len((out / "errors.jsonl").read_text().splitlines()) == 3
    # Masks whose manifest line never came (a run killed between the two) are redone, not trusted.
    kept = [m for m in manifest if m["name"] != "a.png"]
    (out / "manifest.jsonl").write_text("".join(json.dumps(m) + "\n" for m in kept))
    before = (out / "a" / "0.png").stat().st_mtime_ns
    code, err = _auto(capsys, folder, "--out", out, "--checkpoint", checkpoint, "--format", "png")
    assert "5 images: 1 written" in err and "1 already done" in err and "3 failed" in err
    assert (out / "a" / "0.png").stat().st_mtime_ns != before
