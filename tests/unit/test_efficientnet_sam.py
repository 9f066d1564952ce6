"""The EfficientNet-Lite SAM (the bundled model's architecture): encoder, box prior, ONNX, ImageNet weights,
and the generator defaults a model carries."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import segany
from segany.automatic import SamAutomaticMaskGenerator
from segany.checkpoints import CheckpointError, save_checkpoint
from segany.config import EfficientNetLiteConfig, SamConfig
from segany.modeling.prompt_prior import DISK_RADIUS, PRIOR_FLOOR, PRIOR_LOGIT, click_logits, ellipse_logits
from support import SMALL_EFFICIENTNET as SMALL
from support import sample_image
from support import small_efficientnet_model as small_model


@pytest.mark.parametrize("stride", [8, 16, 32])
def test_the_encoder_gives_the_configured_grid(stride: int) -> None:
    config = SMALL.replace(encoder={"out_stride": stride})
    model = small_model(config)
    with torch.no_grad():
        embedding = model.image_encoder(torch.zeros(2, 3, 256, 256))
    assert embedding.shape == (2, 64, 256 // stride, 256 // stride)
    assert config.encoder.embedding_grid == 256 // stride
    predictor = segany.SamPredictor(model)
    image = sample_image()
    predictor.set_image(image)
    masks, scores, logits = predictor.predict(point_coords=np.array([[100, 80]]), point_labels=np.array([1]))
    assert masks.shape == (3, *image.shape[:2]) and scores.shape == (3,)
    assert logits.shape == (3, 4 * 256 // stride, 4 * 256 // stride)


def test_bad_encoder_configs_are_refused_in_one_sentence() -> None:
    with pytest.raises(ValueError, match="Unknown EfficientNet-Lite variant 'efficientnet_b9'"):
        EfficientNetLiteConfig(variant="efficientnet_b9")
    with pytest.raises(ValueError, match="out_stride must be 8, 16 or 32"):
        EfficientNetLiteConfig(out_stride=4)
    with pytest.raises(ValueError, match="prompt_prior must be one of none, geometric"):
        SamConfig(prompt_prior="circle")


def test_training_keeps_batch_norm_statistics_frozen() -> None:
    model = small_model().train()
    batch_norms = [m for m in model.image_encoder.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert batch_norms and not any(m.training for m in batch_norms)
    assert model.image_encoder.neck.training


def test_config_and_weights_round_trip_through_safetensors(tmp_path) -> None:
    model = small_model().eval()
    path = save_checkpoint(model, tmp_path / "m.safetensors", config=model.config)
    loaded = segany.build_sam(checkpoint=path, device="cpu")
    assert loaded.config == SMALL
    image = torch.rand(1, 3, 256, 256) * 255
    with torch.no_grad():
        assert torch.equal(loaded.embed_images(image), model.embed_images(image))
    # An official-layout .pth has no room for the configuration: one sentence says what to do.
    pth = save_checkpoint(model, tmp_path / "m.pth", config=model.config)
    with pytest.raises(
        CheckpointError, match=r"without its configuration; save such models as \.safetensors"
    ):
        segany.build_sam(checkpoint=pth, device="cpu")


def test_the_ellipse_prior_crosses_zero_on_the_ellipse() -> None:
    box = torch.tensor([[64.0, 32.0, 192.0, 96.0]])  # centre (128, 64), half sides 64 x 32
    logits = ellipse_logits(box, low_res=64, img_size=256)[0, 0]  # cells 4 px wide
    assert logits.shape == (64, 64)
    inside = logits > 0
    rows, cols = torch.nonzero(inside, as_tuple=True)
    # Cell centres (4 i + 2) inside the ellipse: columns 64..192, rows 32..96 at the widest.
    assert (cols.min() * 4 + 2, cols.max() * 4 + 2) == (66, 190)
    assert (rows.min() * 4 + 2, rows.max() * 4 + 2) == (34, 94)
    assert logits.max() <= PRIOR_LOGIT and logits.min() == -PRIOR_FLOOR
    area = inside.sum().item() * 16
    assert area == pytest.approx(np.pi * 64 * 32, rel=0.05)


def test_a_positive_click_gives_a_disk_and_a_negative_one_nothing() -> None:
    coords = torch.tensor([[[128.0, 64.0], [40.0, 200.0]]])
    logits = click_logits(coords, torch.tensor([[1, 0]]), low_res=64, img_size=256)[0, 0]
    inside = logits > 0
    assert inside[16, 32] and not inside[50, 10]  # the positive click's cell; the negative one's
    area = inside.sum().item() * 16
    assert area == pytest.approx(np.pi * (DISK_RADIUS * 256) ** 2, rel=0.1)
    assert logits.min() == -PRIOR_FLOOR


def test_the_prior_is_added_for_boxes_and_clicks_and_the_untrained_model_answers_it() -> None:
    with_prior = small_model()
    without = small_model(SMALL.replace(prompt_prior="none"))
    without.load_state_dict(with_prior.state_dict())
    embedding = torch.randn(1, 64, 16, 16)
    boxes = torch.tensor([[30.0, 40.0, 150.0, 120.0]])
    points = (torch.tensor([[[60.0, 70.0], [200.0, 30.0]]]), torch.tensor([[1, 1]]))
    with torch.no_grad():
        a, iou_a = with_prior.decode(embedding, boxes=boxes, multimask_output=False)
        b, iou_b = without.decode(embedding, boxes=boxes, multimask_output=False)
        c, _ = with_prior.decode(embedding, points=points)
        d, _ = without.decode(embedding, points=points)
        e, _ = with_prior.decode(embedding, points=points, boxes=boxes, multimask_output=False)
    assert torch.allclose(a - b, ellipse_logits(boxes, 64, 256), atol=1e-5)
    assert torch.equal(iou_a, iou_b)
    assert torch.allclose(c - d, click_logits(*points, 64, 256).expand_as(c), atol=1e-5)
    both = torch.maximum(ellipse_logits(boxes, 64, 256), click_logits(*points, 64, 256))
    assert torch.allclose(e, both, atol=1e-5)  # untrained: the decoder's own logits start at zero
    assert torch.equal(b, torch.zeros_like(b))


def test_the_prior_can_also_be_the_mask_prompt() -> None:
    feeding = small_model(SMALL.replace(prior_as_mask_prompt=True))
    plain = small_model()
    plain.load_state_dict(feeding.state_dict())
    embedding = torch.randn(1, 64, 16, 16)
    boxes = torch.tensor([[30.0, 40.0, 150.0, 120.0]])
    previous = torch.randn(1, 1, 64, 64)
    with torch.no_grad():
        fed, _ = feeding.decode(embedding, boxes=boxes, multimask_output=False)
        given, _ = plain.decode(
            embedding, boxes=boxes, masks=ellipse_logits(boxes, 64, 256), multimask_output=False
        )
        # A mask prompt of the caller's own wins over the prior.
        kept, _ = feeding.decode(embedding, boxes=boxes, masks=previous, multimask_output=False)
        same, _ = plain.decode(embedding, boxes=boxes, masks=previous, multimask_output=False)
    assert torch.allclose(fed, given, atol=1e-5)
    assert torch.allclose(kept, same, atol=1e-5)


@pytest.mark.parametrize(
    "prior_as_mask_prompt, mask_scorer, detail_skips",
    [(False, False, False), (True, False, False), (True, True, False), (True, False, True)],
)
def test_onnx_graphs_answer_like_torch(tmp_path, prior_as_mask_prompt: bool, mask_scorer: bool, detail_skips: bool) -> None:
    ort = pytest.importorskip("onnxruntime")
    from segany.export.onnx_export import export_decoder, export_encoder

    config = SMALL.replace(
        prior_as_mask_prompt=prior_as_mask_prompt, mask_scorer=mask_scorer, encoder={"detail_skips": detail_skips}
    )
    model = small_model(config).eval()
    torch.manual_seed(1)
    heads = [*model.mask_decoder.output_hypernetworks_mlps]
    if model.mask_scorer is not None:
        heads.append(model.mask_scorer.mlp)
    for mlp in heads:  # trained-like heads, not the zero start
        torch.nn.init.normal_(mlp.layers[-1].weight, std=0.1)
    if detail_skips:  # trained-like projections, not the zero start
        for conv in (model.image_encoder.detail4, model.image_encoder.detail8):
            torch.nn.init.normal_(conv.weight, std=0.2)
    export_encoder(model, tmp_path / "encoder.onnx")
    export_decoder(model, tmp_path / "decoder.onnx", return_single_mask=False)
    image = np.random.default_rng(0).normal(size=(1, 3, 256, 256)).astype(np.float32)
    (embedding,) = ort.InferenceSession(str(tmp_path / "encoder.onnx")).run(None, {"image": image})
    with torch.no_grad():
        reference = model.image_encoder(torch.from_numpy(image)).numpy()
    assert embedding.shape == (1, 256 if detail_skips else 64, 16, 16)
    assert np.abs(embedding - reference).max() <= 1e-4
    session = ort.InferenceSession(str(tmp_path / "decoder.onnx"))
    box = torch.tensor([[30.0, 40.0, 150.0, 120.0]])
    for coords, labels, boxes in [
        (np.array([[[30.0, 40.0], [150.0, 120.0]]]), np.array([[2.0, 3.0]]), box),  # the box: prior added
        (np.array([[[60.0, 70.0], [0.0, 0.0]]]), np.array([[1.0, -1.0]]), None),  # a click: its disk
    ]:
        inputs = {
            "image_embeddings": reference,
            "point_coords": coords.astype(np.float32),
            "point_labels": labels.astype(np.float32),
            "mask_input": np.zeros((1, 1, 64, 64), np.float32),
            "has_mask_input": np.zeros(1, np.float32),
            "orig_im_size": np.array([256.0, 256.0], np.float32),
        }
        _, scores, low_res = session.run(None, inputs)  # all four mask tokens
        points = None if boxes is not None else (torch.tensor([[[60.0, 70.0]]]), torch.tensor([[1]]))
        multimask = boxes is None
        with torch.no_grad():
            expected, expected_iou = model.decode(
                torch.from_numpy(reference), points=points, boxes=boxes, multimask_output=multimask
            )
        tokens = slice(1, None) if multimask else slice(0, 1)
        low_res, scores = low_res[:, tokens], scores[:, tokens]
        assert np.abs(low_res - expected.numpy()).max() <= 1e-3
        assert np.abs(scores - expected_iou.numpy()).max() <= 1e-4


def test_the_generator_takes_the_models_own_defaults() -> None:
    model = small_model(SMALL.replace(generator_defaults=(("pred_iou_thresh", 0.6),)))
    generator = SamAutomaticMaskGenerator(model, points_per_side=4)
    assert generator.pred_iou_thresh == 0.6
    assert generator.stability_score_thresh == 0.95  # not given by the model: SAM's
    assert SamAutomaticMaskGenerator(model, points_per_side=4, pred_iou_thresh=0.8).pred_iou_thresh == 0.8
    # The defaults travel in the checkpoint's metadata.
    assert SamConfig.from_json(model.config.to_json()).generator_defaults == (("pred_iou_thresh", 0.6),)
    odd = small_model(SMALL.replace(generator_defaults=(("crop_n_layers", 2.0),)))
    with pytest.raises(ValueError, match="a model cannot set generator option"):
        SamAutomaticMaskGenerator(odd)


def test_the_backbone_alone_can_be_frozen_for_a_first_stage() -> None:
    from segany.training.optim import freeze

    model = small_model()
    freeze(model, ["image_encoder.backbone"])
    assert not any(p.requires_grad for p in model.image_encoder.backbone.parameters())
    assert all(p.requires_grad for p in model.image_encoder.neck.parameters())
    assert all(p.requires_grad for p in model.mask_decoder.parameters())
    with pytest.raises(
        ValueError, match=r"Cannot freeze 'image_encoder\.trunk': this model has no such module"
    ):
        freeze(model, ["image_encoder.trunk"])
    with pytest.raises(ValueError, match="the parts of SAM are"):
        freeze(model, ["backbone"])


def test_inference_folds_batch_norms_and_follows_weight_changes() -> None:
    model = small_model().eval()
    torch.manual_seed(3)
    for norm in (m for m in model.image_encoder.backbone.modules() if isinstance(m, torch.nn.BatchNorm2d)):
        norm.running_mean.uniform_(-0.5, 0.5)  # ImageNet-like statistics, not the identity a new model has
        norm.running_var.uniform_(0.5, 2.0)
        torch.nn.init.uniform_(norm.weight, 0.5, 1.5)
        torch.nn.init.uniform_(norm.bias, -0.2, 0.2)
    encoder = model.image_encoder
    image = torch.randn(1, 3, 256, 256)
    keys = set(encoder.state_dict())
    with torch.no_grad():
        folded = encoder(image)
    assert encoder._folded is not None  # the inference path ran the folded copy
    reference = encoder(image).detach()  # gradients on: the training form, norms as they are
    assert torch.allclose(folded, reference, atol=1e-4)
    assert set(encoder.state_dict()) == keys  # the copy is derived, never saved
    # A weight written in place (an optimiser step) is seen by the next inference call.
    with torch.no_grad():
        next(encoder.backbone.parameters()).mul_(0.5)
        changed = encoder(image)
    assert torch.allclose(changed, encoder(image).detach(), atol=1e-4)
    assert not torch.allclose(changed, folded, atol=1e-3)
