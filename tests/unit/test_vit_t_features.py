"""Every feature with a ``vit_t``-type model: bfloat16, ONNX (both graphs), the automatic generator, the
annotation app, the engine and the CLI. ``TINY_T`` (the published TinyViT at 256 input) keeps each quick.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import segany
from segany.cli import main
from segany.training.synthetic import make_scene
from support import TINY_T, randomize_

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.fixture(scope="module")
def model():
    return randomize_(segany.sam_from_config(TINY_T), seed=6).eval()


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    """The model as safetensors carrying its config (a plain state dict would be built at 1024 input)."""
    return segany.save_checkpoint(model, tmp_path_factory.mktemp("ckpt") / "tiny_t.safetensors", TINY_T)


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return make_scene(np.random.default_rng(3), 120, 160).image


def test_bfloat16_embedding_and_predictions(model, image):
    exact, fast = segany.SamPredictor(model), segany.SamPredictor(model, dtype="bfloat16")
    exact.set_image(image)
    fast.set_image(image)
    a, b = exact.get_image_embedding(), fast.get_image_embedding()
    assert b.dtype == torch.float32 and ((a - b).norm() / a.norm()).item() < 0.05
    point = (np.array([[80.0, 60.0]]), np.array([1]))
    masks, scores, low = fast.predict(*point)
    assert masks.shape == (3, 120, 160) and scores.dtype == np.float32 and low.dtype == np.float32
    assert np.abs(scores - exact.predict(*point)[1]).max() < 0.05


def test_onnxruntime_backend_exports_both_graphs_and_answers_like_torch(model, image, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path))
    exact, ort = segany.SamPredictor(model), segany.SamPredictor(model, backend="onnxruntime")
    assert list((tmp_path / "onnx").glob("*/encoder.onnx"))
    exact.set_image(image)
    ort.set_image(image)
    assert (exact.get_image_embedding() - ort.get_image_embedding()).abs().max().item() <= 1e-4
    for kwargs in (
        dict(point_coords=np.array([[80.0, 60.0]]), point_labels=np.array([1])),
        dict(box=np.array([20, 10, 120, 100]), multimask_output=False),
    ):
        a, b = exact.predict(**kwargs), ort.predict(**kwargs)
        assert np.abs(a[1] - b[1]).max() <= 1e-4 and np.abs(a[2] - b[2]).max() <= 1e-4


def test_export_onnx_cli(checkpoint, tmp_path):
    pytest.importorskip("onnxruntime", reason="needs the onnx extra")
    assert main(["export-onnx", "--checkpoint", str(checkpoint), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "encoder.onnx").is_file() and (tmp_path / "decoder.onnx").is_file()


def test_automatic_generator(model, image):
    records = segany.SamAutomaticMaskGenerator(
        model, points_per_side=4, pred_iou_thresh=0.0, stability_score_thresh=0.0
    ).generate(image)
    assert records and all(r["segmentation"].shape == image.shape[:2] for r in records)


def test_annotation_app_embeds_and_predicts(model, image, tmp_path):
    from fastapi.testclient import TestClient

    from segany.app.server import create_app

    (tmp_path / "images").mkdir()
    Image.fromarray(image).save(tmp_path / "images" / "a.png")
    app = create_app(tmp_path / "images", model_factory=lambda: model, db_path=tmp_path / "db.sqlite")
    with TestClient(app, base_url="http://127.0.0.1") as client:
        (entry,) = client.get("/api/images").json()["images"]
        assert client.post(f"/api/images/{entry['id']}/embed", headers={"Content-Type": "application/json"}).status_code == 200
        answer = client.post(f"/api/images/{entry['id']}/predict", json={"points": [[80, 60]], "labels": [1]})
        assert answer.status_code == 200, answer.text


def test_engine_labels_with_a_vit_t_checkpoint(checkpoint, tmp_path):
    from segany.formats.sa1b import read_sa1b

    (tmp_path / "in").mkdir()
    Image.fromarray(make_scene(np.random.default_rng(0), 72, 96).image).save(tmp_path / "in" / "a.png")
    flags = ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
    argv = ["engine", "label", "--input", str(tmp_path / "in"), "--out", str(tmp_path / "out")]
    assert main([*argv, "--checkpoint", str(checkpoint), *flags]) == 0
    info, annotations = read_sa1b(tmp_path / "out" / "a.json")
    assert info["file_name"] == "a.png" and annotations


def test_segment_cli_with_a_vit_t_checkpoint(checkpoint, image, tmp_path, capsys):
    Image.fromarray(image).save(tmp_path / "a.png")
    argv = ["segment", str(tmp_path / "a.png"), "--checkpoint", str(checkpoint), "--point", "80,60"]
    assert main([*argv, "--out", str(tmp_path / "mask.png")]) == 0
    assert (tmp_path / "mask.png").is_file()
