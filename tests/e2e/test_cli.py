"""``segany segment`` end to end: the files and JSON a user gets, and one clean error line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import segany
from support import TINY, randomize_, sample_image
from support import run_cli as run

WIDTH, HEIGHT = 320, 240


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A 320 x 240 JPEG and the same tiny random model saved as .pth and .safetensors."""
    root = tmp_path_factory.mktemp("cli")
    image = Image.fromarray(sample_image()).resize((WIDTH, HEIGHT), Image.BILINEAR)
    image.save(root / "photo.jpg", quality=95)
    model = randomize_(segany.sam_from_config(TINY))
    segany.save_checkpoint(model, root / "tiny.pth")
    segany.save_checkpoint(model, root / "tiny.safetensors")
    return {
        "image": root / "photo.jpg",
        "pth": root / "tiny.pth",
        "safetensors": root / "tiny.safetensors",
    }


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch, tmp_path):
    """No downloaded official checkpoint from the user's own cache can leak into these tests."""
    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path / "empty-cache"))




def read_png(path: Path) -> tuple[str, np.ndarray]:
    with Image.open(path) as img:
        assert img.format == "PNG"
        return img.mode, np.asarray(img)


def test_one_click_writes_best_mask_overlay_and_json(files, tmp_path, capsys):
    out, overlay = tmp_path / "mask.png", tmp_path / "overlay.png"
    code, stdout, stderr = run(
        [
            "segment",
            str(files["image"]),
            "--point",
            "160,120",
            "--checkpoint",
            str(files["pth"]),
            "--out",
            str(out),
            "--overlay",
            str(overlay),
            "--device",
            "cpu",
        ],
        capsys,
    )
    assert (code, stderr) == (0, "")
    lines = stdout.splitlines()
    assert len(lines) == 1
    report = json.loads(lines[0])
    assert {"image", "size", "best", "masks", "scores"} <= set(report)
    assert report["image"] == str(files["image"])
    assert report["size"] == [WIDTH, HEIGHT]
    assert len(report["scores"]) == 3  # one click is ambiguous: three candidates scored
    assert len(report["masks"]) == 1 and report["best"] == 0
    (mask,) = report["masks"]
    assert set(mask) == {"path", "score", "area"}
    assert mask["path"] == str(out)
    assert mask["score"] == max(report["scores"])  # the best candidate was kept
    assert report["overlay"] == str(overlay)

    mode, pixels = read_png(out)
    assert mode == "L"
    assert pixels.shape == (HEIGHT, WIDTH)
    assert set(np.unique(pixels)) <= {0, 255}
    assert int((pixels == 255).sum()) == mask["area"]

    mode, picture = read_png(overlay)
    assert mode == "RGB"
    assert picture.shape == (HEIGHT, WIDTH, 3)
    assert tuple(picture[120, 160]) == (0, 200, 0)  # the foreground click is drawn as a green star
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary files left behind


def test_multimask_writes_three_numbered_masks(files, tmp_path, capsys):
    out = tmp_path / "masks" / "cand.png"  # the folder does not exist yet
    code, stdout, stderr = run(
        [
            "segment",
            str(files["image"]),
            "--point",
            "100,80",
            "--checkpoint",
            str(files["pth"]),
            "--out",
            str(out),
            "--multimask",
        ],
        capsys,
    )
    assert (code, stderr) == (0, "")
    report = json.loads(stdout)
    paths = [tmp_path / "masks" / f"cand_{i}.png" for i in range(3)]
    assert [m["path"] for m in report["masks"]] == [str(p) for p in paths]
    assert [m["score"] for m in report["masks"]] == report["scores"]
    assert report["best"] == int(np.argmax(report["scores"]))
    assert not out.exists()
    for path, entry in zip(paths, report["masks"], strict=True):
        mode, pixels = read_png(path)
        assert (mode, pixels.shape) == ("L", (HEIGHT, WIDTH))
        assert set(np.unique(pixels)) <= {0, 255}
        assert int((pixels == 255).sum()) == entry["area"]


def test_points_with_labels_and_box_give_one_mask(files, tmp_path, capsys):
    out = tmp_path / "mask.png"
    code, stdout, stderr = run(
        [
            "segment",
            str(files["image"]),
            "--point",
            "50,60,0",
            "--point",
            "150.5,110,1",
            "--box",
            "20,30,300,230",
            "--checkpoint",
            str(files["safetensors"]),
            "--out",
            str(out),
        ],
        capsys,
    )
    assert (code, stderr) == (0, "")
    report = json.loads(stdout)
    assert len(report["scores"]) == 1
    assert report["masks"][0]["score"] == report["scores"][0]
    mode, pixels = read_png(out)
    assert (mode, pixels.shape) == ("L", (HEIGHT, WIDTH))
    assert int((pixels == 255).sum()) == report["masks"][0]["area"]


def test_same_prompt_gives_the_same_mask_from_pth_and_safetensors(files, tmp_path, capsys):
    masks = []
    for kind in ("pth", "safetensors"):
        out = tmp_path / f"{kind}.png"
        argv = ["segment", str(files["image"]), "--point", "200,90", "--checkpoint", str(files[kind])]
        code, stdout, _ = run([*argv, "--out", str(out)], capsys)
        assert code == 0
        masks.append((json.loads(stdout)["scores"], read_png(out)[1]))
    np.testing.assert_allclose(masks[0][0], masks[1][0], atol=1e-5)
    np.testing.assert_array_equal(masks[0][1], masks[1][1])


def _argv(files: dict[str, Path], case: str, tmp_path: Path) -> list[str]:
    """The command line of a bad-input case (everything else valid)."""
    image, checkpoint = str(files["image"]), str(files["pth"])
    prompt = ["--point", "160,120"]
    if case == "missing image":
        image = str(tmp_path / "nope.jpg")
    elif case == "text file as image":
        (tmp_path / "x.jpg").write_text("this is not a picture\n")
        image = str(tmp_path / "x.jpg")
    elif case == "point outside":
        prompt = ["--point", "10,10", "--point", f"{WIDTH},100"]  # x == width is one past the edge
    elif case == "box outside":
        prompt = ["--box", f"0,0,100,{HEIGHT + 5}"]
    elif case == "no prompt":
        prompt = []
    elif case == "malformed point":
        prompt = ["--point", "1;2"]
    elif case == "missing checkpoint":
        checkpoint = str(tmp_path / "missing.pth")
    elif case == "truncated checkpoint":
        data = files["pth"].read_bytes()
        (tmp_path / "half.pth").write_bytes(data[: len(data) // 2])
        checkpoint = str(tmp_path / "half.pth")
    elif case == "not a SAM checkpoint":
        torch.save({"fc.weight": torch.zeros(2, 2)}, tmp_path / "other.pth")
        checkpoint = str(tmp_path / "other.pth")
    elif case == "wrong variant":
        return ["segment", image, *prompt, "--model", "vit_b", "--checkpoint", checkpoint]
    elif case == "no checkpoint, empty cache":
        return ["segment", image, *prompt, "--model", "vit_h"]
    elif case == "unknown device":
        return ["segment", image, *prompt, "--checkpoint", checkpoint, "--device", "gpu0"]
    elif case == "absent GPU":
        return ["segment", image, *prompt, "--checkpoint", checkpoint, "--device", "cuda:99"]
    return ["segment", image, *prompt, "--checkpoint", checkpoint]


BAD_INPUTS = [
    ("missing image", 1, ["Image not found", "nope.jpg"]),
    ("text file as image", 1, ["Cannot read", "x.jpg"]),
    ("point outside", 1, ["Point (320, 100)", "outside the image (320 x 240"]),
    ("box outside", 1, ["reaches outside the image (320 x 240"]),
    ("no prompt", 1, ["--point", "--box"]),
    ("malformed point", 2, ["argument --point", "'1;2'"]),
    ("missing checkpoint", 1, ["Checkpoint not found", "missing.pth"]),
    ("truncated checkpoint", 1, ["truncated or corrupt", "half.pth"]),
    ("not a SAM checkpoint", 1, ["not a SAM checkpoint", "fc.weight"]),
    ("wrong variant", 1, ["tiny.pth", "not vit_b"]),
    ("no checkpoint, empty cache", 1, ["segany download vit_h"]),
    ("unknown device", 1, ["Unknown device 'gpu0'"]),
    ("absent GPU", 1, ["Device 'cuda:99' is not available", "--device cpu"]),
]


@pytest.mark.parametrize(("case", "status", "phrases"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_error_line_and_writes_nothing(files, tmp_path, capsys, case, status, phrases):
    out, overlay = tmp_path / "mask.png", tmp_path / "overlay.png"
    out.write_bytes(b"an earlier result")
    argv = [*_argv(files, case, tmp_path), "--out", str(out), "--overlay", str(overlay)]
    code, stdout, stderr = run(argv, capsys)
    assert code == status
    assert stdout == ""
    assert "Traceback" not in stderr
    if status == 2:  # argparse usage error: usage lines, then one "error:" line
        errors = [line for line in stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and errors[0].startswith("segany segment: error:")
    else:
        errors = stderr.splitlines()
        assert len(errors) == 1 and errors[0].startswith("segany: error:")
    for phrase in phrases:
        assert phrase in errors[0]
    assert out.read_bytes() == b"an earlier result"
    assert not overlay.exists()


def test_failed_run_keeps_the_mask_of_an_earlier_run(files, tmp_path, capsys):
    out = tmp_path / "mask.png"
    good = ["segment", str(files["image"]), "--point", "160,120", "--checkpoint", str(files["pth"])]
    assert run([*good, "--out", str(out)], capsys)[0] == 0
    before = out.read_bytes()
    (tmp_path / "half.pth").write_bytes(files["pth"].read_bytes()[:1000])
    bad_checkpoint = [*good[:-1], str(tmp_path / "half.pth")]
    assert run([*bad_checkpoint, "--out", str(out)], capsys)[0] == 1
    bad_point = [*good[:3], "5000,5", *good[4:]]
    assert run([*bad_point, "--out", str(out)], capsys)[0] == 1
    assert out.read_bytes() == before


def _segany(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SEGANY_CACHE_DIR": str(cwd / "empty-cache")}
    return subprocess.run(
        [sys.executable, "-m", "segany", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_python_dash_m_segany_segments(files, tmp_path):
    result = _segany(
        "segment", str(files["image"]), "--point", "160,120", "--checkpoint", str(files["pth"]), cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["masks"][0]["path"] == "mask.png"  # the default --out, relative to the working folder
    mode, pixels = read_png(tmp_path / "mask.png")
    assert (mode, pixels.shape) == ("L", (HEIGHT, WIDTH))


def test_python_dash_m_segany_reports_errors_without_traceback(files, tmp_path):
    result = _segany(
        "segment", str(files["image"]), "--point", "1,1", "--checkpoint", "nowhere.pth", cwd=tmp_path
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith("segany: error:") and "segany download" in result.stderr


def test_help_lists_the_commands(tmp_path):
    result = _segany("--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "segment" in result.stdout and "download" in result.stdout
