"""``segany engine stats``: figures of a labelled folder built by hand, as text, JSON and a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segany.cli import main
from segany.engine.outputs import LabelLog, run_line
from segany.engine.pipeline import LabelJob, LabelResult, ModelSpec
from segany.engine.stats import collect_stats
from segany.formats import get_writer

H, W = 40, 50


def _record(area_side: int, iou: float, stability: float) -> dict:
    mask = np.zeros((H, W), dtype=bool)
    mask[:area_side, :area_side] = True
    return {
        "segmentation": mask,
        "area": int(mask.sum()),
        "bbox": [0, 0, area_side, area_side],
        "predicted_iou": iou,
        "point_coords": [[1.0, 1.0]],
        "stability_score": stability,
        "crop_box": [0, 0, W, H],
    }


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Two labelled images (3 and 1 masks), one failed image, and one run line."""
    job = LabelJob(out_dir=str(tmp_path), model=ModelSpec("model.safetensors"))
    log = LabelLog(tmp_path)
    writer = get_writer("sa1b")
    images = {"a.png": [_record(10, 0.9, 0.95), _record(20, 0.92, 0.97), _record(40, 0.98, 0.99)]}
    images["sub/b.png"] = [_record(30, 0.95, 0.96)]
    results = []
    for image_id, (name, records) in enumerate(images.items()):
        writer.write(tmp_path, name, image_id, H, W, records)
        results.append(
            LabelResult(image_id, name, name, "ok", masks=len(records), height=H, width=W, seconds=0.5)
        )
    results.append(LabelResult(2, "c.png", "c.png", "error", seconds=0.01, error="ImageError: broken"))
    for result in results:
        log.record(result, job)
    log.compact()
    line = run_line(
        started="2026-01-01T00:00:00+00:00",
        seconds=6.0,
        first_seconds=2.0,
        runner="ray",
        actors=2,
        images=3,
        skipped=0,
        results=results,
        job=job,
    )
    log.add_run(line)
    return tmp_path


def test_figures(folder: Path) -> None:
    stats = collect_stats(folder)
    assert (stats.images, stats.labelled, stats.failed, stats.masks) == (3, 2, 1, 4)
    assert stats.masks_per_image.mean == pytest.approx(2.0)
    sizes = np.sqrt(np.array([100, 400, 1600, 900]) / (H * W))
    assert stats.mask_size.mean == pytest.approx(sizes.mean())
    assert sum(stats.mask_size.histogram.counts) == 4
    assert stats.mask_size.histogram.edges[0] == 0.0 and stats.mask_size.histogram.edges[-1] == 1.0
    assert stats.predicted_iou.quantiles["min"] == pytest.approx(0.9)
    assert stats.predicted_iou.quantiles["max"] == pytest.approx(0.98)
    assert stats.stability.mean == pytest.approx(np.mean([0.95, 0.97, 0.99, 0.96]))
    run = stats.to_dict()["runs"][0]
    assert run["images_per_minute"] == pytest.approx(30.0)  # 3 images in 6 s
    assert run["steady_images_per_minute"] == pytest.approx(30.0)  # 2 more in the 4 s after the first


def test_cli_prints_and_draws(folder: Path, tmp_path: Path, capsys) -> None:
    out_json = tmp_path / "figures.json"
    assert main(["engine", "stats", str(folder), "--json", str(out_json)]) == 0
    text = capsys.readouterr().out
    assert "3 images, 2 labelled, 1 failed, 4 masks" in text
    assert "predicted IoU: mean 0.938" in text
    assert "ray   actors=2  3 images in 6.0 s: 30.0 images/min (steady 30.0)" in text
    with Image.open(folder / "stats.png") as picture:
        assert picture.format == "PNG" and picture.size[0] > 400
    assert json.loads(out_json.read_text())["masks"] == 4


def test_a_folder_without_manifest_is_refused(tmp_path: Path, capsys) -> None:
    assert main(["engine", "stats", str(tmp_path)]) == 1
    assert "has no manifest.jsonl" in capsys.readouterr().err


def test_tick_labels_never_repeat() -> None:
    from segany.engine.plot import tick_labels

    assert tick_labels([0.0, 0.25, 0.5, 0.75, 1.0], 0) == [(0, "0.0"), (2, "0.5"), (4, "1.0")]
    assert tick_labels([0.0, 1.0, 2.0], 0) == [(0, "0"), (1, "1"), (2, "2")]
    assert tick_labels([3.0, 3.0, 3.0], 0) == [(0, "3")]


def test_an_errors_file_even_when_nothing_failed(tmp_path) -> None:
    from segany.engine.outputs import ERRORS, LabelLog

    LabelLog(tmp_path).compact()
    assert (tmp_path / ERRORS).read_text() == ""
