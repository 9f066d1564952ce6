"""Bad files and options across the subcommands: exit status 1 and one ``segany: error:`` sentence, never a
traceback, and nothing created where the command was refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segany.cli import main


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path / "cache"))
    Image.fromarray(np.full((40, 60, 3), 128, np.uint8)).save(tmp_path / "photo.png")
    (tmp_path / "text.pth").write_text("hello\n")
    (tmp_path / "array.json").write_text("[1, 2]")
    (tmp_path / "simulation.toml").write_text('out_dir = "o"\ndata = ["photo.png"]\nsimulation = 3\n')
    (tmp_path / "taken.json").write_text("{}")
    return tmp_path


CASES = {
    "text checkpoint": (
        ["segment", "photo.png", "--point", "5,5", "--checkpoint", "text.pth", "--out", "m.png"],
        "is not a PyTorch checkpoint",
    ),
    "train on a JSON array": (["train", "array.json"], "must hold settings by name"),
    "train on a PNG": (["train", "photo.png"], "is not a text file"),
    "simulation = 3": (["train", "simulation.toml"], "simulation must be a table"),
    "auto --out a file": (["auto", "photo.png", "--out", "taken.json"], "is an existing file"),
    "export-onnx --out a file": (
        ["export-onnx", "--out", "taken.json", "--no-encoder"],
        "is an existing file",
    ),
    "opset 5": (["export-onnx", "--out", "onnx5", "--opset", "5"], "--opset must be between"),
    "opset 99": (["export-onnx", "--out", "onnx99", "--opset", "99"], "--opset must be between"),
    "annotate db under /proc": (
        ["annotate", ".", "--db", "/proc/nope/x.sqlite", "--port", "FREE"],
        "database",
    ),
    "annotate db under a file": (
        ["annotate", ".", "--db", "taken.json/x.sqlite", "--port", "FREE"],
        "database",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_refused_in_one_sentence(place: Path, capsys: pytest.CaptureFixture, case: str) -> None:
    argv, message = CASES[case]
    argv = [str(_free_port()) if word == "FREE" else word for word in argv]
    before = sorted(p.name for p in place.iterdir())
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("segany: error:") and len(err.splitlines()) == 1, err
    assert message in err and "Traceback" not in err
    assert sorted(p.name for p in place.iterdir()) == before  # nothing created


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_an_unknown_flag_shows_the_subcommand_usage(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "photo.png", "--point", "1,1", "--bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "usage: segany segment" in err and "unrecognized arguments: --bogus" in err
