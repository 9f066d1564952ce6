"""ONNX export: the decoder keeps the official interface and numbers; the encoder graph matches PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from segany.cli import main
from segany.export.onnx_decoder import INPUT_NAMES, OUTPUT_NAMES
from support import FIXTURE, FIXTURE_PATH, fixture_model, official_sam

ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra")
pytestmark = pytest.mark.skipif(not FIXTURE_PATH.exists(), reason="fixture model missing")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    out = tmp_path_factory.mktemp("onnx")
    assert main(["export-onnx", "--checkpoint", str(FIXTURE_PATH), "--out", str(out)]) == 0
    return out


def _inputs(num_points: int, with_mask: bool, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    coords = rng.uniform(0, 256, (1, num_points, 2)).astype(np.float32)
    labels = rng.integers(0, 2, (1, num_points)).astype(np.float32)
    labels[0, -1] = -1  # the padding point when there is no box
    coords[0, -1] = 0
    return {
        "image_embeddings": rng.normal(size=(1, 128, 16, 16)).astype(np.float32),
        "point_coords": coords,
        "point_labels": labels,
        "mask_input": rng.normal(size=(1, 1, 64, 64)).astype(np.float32),
        "has_mask_input": np.array([1.0 if with_mask else 0.0], dtype=np.float32),
        "orig_im_size": np.array([300.0, 410.0], dtype=np.float32),
    }


@pytest.mark.parametrize(("num_points", "with_mask"), [(2, False), (4, False), (3, True)])
def test_decoder_matches_official_onnx_model(exported, num_points, with_mask):
    from segment_anything.utils.onnx import SamOnnxModel

    session = ort.InferenceSession(str(exported / "decoder.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == INPUT_NAMES
    assert [o.name for o in session.get_outputs()] == OUTPUT_NAMES
    feeds = _inputs(num_points, with_mask)
    ours = session.run(None, feeds)
    theirs_model = official_sam(FIXTURE)
    theirs_model.load_state_dict(fixture_model().state_dict(), strict=True)
    with torch.no_grad():
        theirs = SamOnnxModel(theirs_model, return_single_mask=True)(
            *(torch.from_numpy(feeds[n]) for n in INPUT_NAMES)
        )
    assert ours[0].shape == (1, 1, 300, 410)
    for a, b in zip(ours, theirs, strict=True):
        b = b.numpy()
        # The fixture's logits are scaled x30 (see make_fixture_model.sharpen): compare relative to that.
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max())
        if a.shape[-1] > 64:
            assert ((a > 0) != (b > 0)).mean() < 1e-4


def test_encoder_graph_matches_pytorch(exported):
    session = ort.InferenceSession(str(exported / "encoder.onnx"), providers=["CPUExecutionProvider"])
    image = np.random.default_rng(1).normal(size=(1, 3, 256, 256)).astype(np.float32)
    (embedding,) = session.run(None, {"image": image})
    with torch.no_grad():
        reference = fixture_model().image_encoder(torch.from_numpy(image)).numpy()
    assert embedding.shape == (1, 128, 16, 16)
    assert np.abs(embedding - reference).max() <= 1e-4


def test_onnxruntime_backend_answers_like_torch(tmp_path, monkeypatch):
    import segany
    from support import sample_image

    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path))
    model = fixture_model()
    torch_predictor = segany.SamPredictor(model)
    ort_predictor = segany.SamPredictor(model, backend="onnxruntime")
    assert list((tmp_path / "onnx").glob("*/decoder_lowres.onnx"))  # exported once into the cache
    image = sample_image()
    torch_predictor.set_image(image)
    ort_predictor.set_image(image)
    h, w = image.shape[:2]
    cases = [
        dict(point_coords=np.array([[w / 2, h / 2]]), point_labels=np.array([1])),
        dict(
            point_coords=np.array([[w / 2, h / 2], [10, 10]]),
            point_labels=np.array([1, 0]),
            multimask_output=False,
        ),
        dict(box=np.array([[50, 60, 400, 300], [0, 0, 200, 200]]), multimask_output=False),
    ]
    for kwargs in cases:
        a, b = torch_predictor.predict(**kwargs), ort_predictor.predict(**kwargs)
        assert a[0].shape == b[0].shape
        assert np.abs(a[1] - b[1]).max() <= 1e-4
        assert np.abs(a[2] - b[2]).max() <= 1e-4 * np.abs(a[2]).max()
        assert (a[0] != b[0]).mean() < 1e-4
    with pytest.raises(ValueError, match="backend must be 'torch', 'onnxruntime' or 'onnxruntime-int8'"):
        segany.SamPredictor(model, backend="tensorrt")


def test_quantized_export_reports_its_measured_cost(tmp_path, capsys):
    import json

    assert main(["export-onnx", "--checkpoint", str(FIXTURE_PATH), "--out", str(tmp_path), "--quantize"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert (tmp_path / "decoder.int8.onnx").stat().st_size < (tmp_path / "decoder.onnx").stat().st_size
    cost = json.loads(lines[-1])["int8_accuracy_cost"]
    assert 0.0 < cost["decoder_mask_iou_mean"] <= 1.0 and cost["encoder_relative_error"] < 0.1


def test_int8_backend_runs_and_stays_close(tmp_path, monkeypatch):
    import segany
    from support import sample_image

    monkeypatch.setenv("SEGANY_CACHE_DIR", str(tmp_path))
    model = fixture_model()
    exact, int8 = segany.SamPredictor(model), segany.SamPredictor(model, backend="onnxruntime-int8")
    image = sample_image()
    exact.set_image(image)
    int8.set_image(image)
    relative = (
        exact.get_image_embedding() - int8.get_image_embedding()
    ).norm() / exact.get_image_embedding().norm()
    assert relative < 0.05
    point = np.array([[image.shape[1] / 2, image.shape[0] / 2]])
    a, b = exact.predict(point, np.array([1])), int8.predict(point, np.array([1]))
    assert b[0].shape == a[0].shape and np.abs(a[1] - b[1]).max() < 0.1
