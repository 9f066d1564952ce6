"""``segany eval`` end to end: the JSON and table a user gets, and one clean error line for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import FIXTURE_PATH
from support import run_cli as run

pytest.importorskip("segany.training.datasets", reason="segany eval reads its data with open_dataset")

DATA = "synthetic:seed=1,count=3,size=128"


@pytest.fixture(autouse=True)
def empty_cache(monkeypatch, tmp_path):
    """No downloaded official checkpoint from the user's own cache can leak into these tests."""
    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path / "empty-cache"))




def test_writes_json_and_prints_a_table(tmp_path, capsys):
    output = tmp_path / "results" / "eval.json"
    argv = ["eval", DATA, "--checkpoint", str(FIXTURE_PATH), "--clicks", "2", "--max-masks-per-image", "3"]
    code, out, _ = run([*argv, "--output", str(output)], capsys)
    assert code == 0
    report = json.loads(output.read_text())
    assert {"dataset", "images", "masks", "model", "sam", "box_as_mask", "grabcut", "seconds"} <= set(report)
    assert report["dataset"] == DATA and report["images"] == 3 and 3 <= report["masks"] <= 9
    assert len(report["sam"]["click_miou"]) == 2
    for value in (
        report["sam"]["box_miou"],
        report["box_as_mask"]["box_miou"],
        report["grabcut"]["box_miou"],
    ):
        assert 0.0 <= value <= 1.0
    assert report["model"]["img_size"] == 256 and report["model"]["checkpoint"] == str(FIXTURE_PATH)
    assert "SAM" in out and "GrabCut" in out and "2 clicks" in out
    oracle = report["sam"]["click1_oracle_miou"]
    assert 0.0 <= oracle <= 1.0 and f"{oracle:.3f} with the best of its" in out
    assert not list(output.parent.glob(".*tmp"))  # the atomic write left no temporary file


def test_no_baselines_leaves_the_floors_out(tmp_path, capsys):
    output = tmp_path / "eval.json"
    argv = ["eval", DATA, "--checkpoint", str(FIXTURE_PATH), "--clicks", "1", "--max-images", "1"]
    code, out, _ = run([*argv, "--no-baselines", "--output", str(output)], capsys)
    assert code == 0
    report = json.loads(output.read_text())
    assert report["images"] == 1 and "grabcut" not in report and "box_as_mask" not in report
    assert "GrabCut" not in out


@pytest.mark.parametrize(
    ("argv", "phrase"),
    [
        (["eval", "synthetic:seed=1,count=oops"], "count"),
        (["eval", "no/such/dataset.json"], "not found"),
        (["eval", DATA, "--clicks", "0"], "clicks must be at least 1"),
        (["eval", DATA, "--max-images", "0"], "max_images must be at least 1"),
        (["eval", DATA, "--min-area", "1000000"], "No masks to evaluate"),
    ],
)
def test_bad_input_is_one_error_line(argv, phrase, tmp_path, capsys):
    output = tmp_path / "eval.json"
    code, out, err = run([*argv, "--checkpoint", str(FIXTURE_PATH), "--output", str(output)], capsys)
    assert code == 1
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("segany: error: ") and phrase in err
    assert not output.exists()


def test_python_dash_m_segany_reports_a_bad_spec_without_traceback(tmp_path):
    env = {**os.environ, "SEGANY_CACHE_DIR": str(tmp_path / "empty-cache")}
    src = str(Path(__file__).resolve().parents[2] / "src")
    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-m", "segany", "eval", "nowhere:seed=1"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("segany: error: ")
    assert "Traceback" not in done.stderr
