"""Dynamic int8 quantisation of the exported graphs, with its accuracy cost measured, not assumed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..prompts import PointLabel


def quantize(path: Path) -> Path:
    """Write ``NAME.int8.onnx`` beside ``path``: weights of MatMul/Gemm as int8 (dynamic quantisation)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out = path.with_name(path.stem + ".int8.onnx")
    quantize_dynamic(
        str(path), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul", "Gemm"]
    )
    return out


def measure_cost(
    folder: Path, image: np.ndarray, model_img_size: int, clicks: int = 16, seed: int = 0
) -> dict[str, float]:
    """Compare the int8 graphs with the float32 ones on ``image`` (``1 x 3 x S x S`` preprocessed).

    Returns the embedding's relative error and, over random single clicks, the mean and minimum IoU of
    the int8 decoder's masks with the float32 decoder's (both on the float32 embedding) and the
    largest predicted-IoU difference.
    """
    import onnxruntime as ort

    def session(name: str) -> ort.InferenceSession:
        return ort.InferenceSession(str(folder / name), providers=["CPUExecutionProvider"])

    report: dict[str, float] = {}
    embedding = session("encoder.onnx").run(None, {"image": image})[0]
    if (folder / "encoder.int8.onnx").exists():
        quantized = session("encoder.int8.onnx").run(None, {"image": image})[0]
        report["encoder_relative_error"] = float(
            np.linalg.norm(quantized - embedding) / np.linalg.norm(embedding)
        )
    exact, fast = session("decoder.onnx"), session("decoder.int8.onnx")
    rng = np.random.default_rng(seed)
    low = 4 * embedding.shape[-1]
    ious, score_diffs = [], []
    for _ in range(clicks):
        feeds = {
            "image_embeddings": embedding,
            "point_coords": np.array([[rng.uniform(0, model_img_size, 2), [0.0, 0.0]]], np.float32),
            "point_labels": np.array([[PointLabel.POSITIVE, PointLabel.PADDING]], np.float32),
            "mask_input": np.zeros((1, 1, low, low), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([model_img_size, model_img_size], np.float32),
        }
        a_masks, a_iou, _ = exact.run(None, feeds)
        b_masks, b_iou, _ = fast.run(None, feeds)
        a, b = a_masks > 0, b_masks > 0
        ious.append(float((a & b).sum() / max((a | b).sum(), 1)))
        score_diffs.append(float(np.abs(a_iou - b_iou).max()))
    report.update(decoder_mask_iou_mean=float(np.mean(ious)), decoder_mask_iou_min=float(np.min(ious)))
    report["decoder_max_score_diff"] = float(np.max(score_diffs))
    return report
