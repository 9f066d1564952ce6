"""The mask-aware IoU head (segany.modeling.mask_scorer) and the interior-most first click of training."""

from __future__ import annotations

import torch

import segany
from segany.checkpoints import save_checkpoint
from segany.modeling import MaskScorer
from segany.training.clicks import first_clicks, interior_cells
from support import SMALL_EFFICIENTNET
from support import small_efficientnet_model as small_model

SCORED = SMALL_EFFICIENTNET.replace(mask_scorer=True)
CLICK = (torch.tensor([[[60.0, 70.0]]]), torch.tensor([[1]]))


def _randomise(scorer: MaskScorer, seed: int = 3) -> None:
    """Trained-like weights instead of the zero start of the last layer."""
    torch.manual_seed(seed)
    torch.nn.init.normal_(scorer.mlp.layers[-1].weight, std=0.1)
    torch.nn.init.normal_(scorer.mlp.layers[-1].bias, std=0.1)


def test_an_untrained_scorer_keeps_the_iou_tokens_prediction_and_the_masks() -> None:
    plain, scored = small_model(), small_model(SCORED)
    scored.load_state_dict({**scored.state_dict(), **plain.state_dict()})
    embedding = plain.image_encoder(torch.rand(1, 3, 256, 256))
    with torch.no_grad():
        for points, boxes in [(CLICK, None), (None, torch.tensor([[30.0, 40.0, 150.0, 120.0]]))]:
            multimask = boxes is None
            masks, iou = plain.decode(embedding, points=points, boxes=boxes, multimask_output=multimask)
            masks2, iou2 = scored.decode(embedding, points=points, boxes=boxes, multimask_output=multimask)
            assert iou2.shape == iou.shape == (1, 3 if multimask else 1)
            assert torch.equal(masks2, masks)
            assert torch.allclose(iou2, iou, atol=1e-6)


def test_a_trained_scorer_changes_the_scores_and_round_trips_through_a_checkpoint(tmp_path) -> None:
    model = small_model(SCORED)
    _randomise(model.mask_scorer)
    embedding = model.image_encoder(torch.rand(1, 3, 256, 256))
    path = save_checkpoint(model, tmp_path / "scored.safetensors", config=model.config)
    loaded = segany.build_sam(checkpoint=path, device="cpu")
    assert loaded.config.mask_scorer and loaded.mask_scorer is not None
    with torch.no_grad():
        _, token_iou = model.mask_decoder(
            embedding,
            model.prompt_encoder.get_dense_pe(),
            *model.prompt_encoder(points=CLICK, boxes=None, masks=None),
            multimask_output=True,
        )
        _, iou = model.decode(embedding, points=CLICK)
        _, reloaded = loaded.decode(embedding, points=CLICK)
    assert not torch.allclose(iou, token_iou, atol=1e-3)
    assert torch.allclose(reloaded, iou, atol=1e-6)


def test_the_scorer_learns_which_candidate_is_right_from_the_masks_alone() -> None:
    """What the IoU token cannot do: here every candidate has the same token IoU, and the true IoU
    depends only on the candidate's mask (the object fills the square's top half)."""
    torch.manual_seed(0)
    scorer = MaskScorer(embed_dim=8, num_mask_tokens=4, hidden_dim=32)
    optimiser = torch.optim.Adam(scorer.parameters(), lr=3e-3)
    grid = torch.arange(32.0)
    embedding = torch.zeros(1, 8, 8, 8)
    embedding[:, 0, :4] = 1.0  # the object's features: the top half of the image

    def batch(size: int) -> tuple[torch.Tensor, torch.Tensor]:
        target = (grid[:, None] < 16).expand(32, 32)
        rows = torch.randint(4, 29, (size, 3)).float()
        masks = grid[None, None, :, None] < rows[..., None, None]  # B x 3 x 32 x 32, top rows
        masks = masks.expand(-1, -1, -1, 32)
        iou = (masks & target).sum((-2, -1)) / (masks | target).sum((-2, -1))
        return torch.where(masks, 8.0, -8.0), iou.float()

    for _ in range(300):
        logits, iou = batch(32)
        predicted = scorer(logits, embedding, torch.full_like(iou, 0.5), range(1, 4))
        loss = torch.nn.functional.mse_loss(predicted, iou)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    logits, iou = batch(200)
    with torch.no_grad():
        predicted = scorer(logits, embedding, torch.full_like(iou, 0.5), range(1, 4))
    picked = iou.gather(1, predicted.argmax(1, keepdim=True))[:, 0]
    assert (picked >= iou.max(1).values - 0.05).float().mean() >= 0.9
    assert (predicted - iou).abs().mean() <= 0.05


def test_the_scorer_judges_the_masks_without_training_them() -> None:
    model = small_model(SCORED).train()
    _randomise(model.mask_scorer)
    embedding = model.image_encoder(torch.rand(1, 3, 256, 256)).detach()
    _, iou = model.decode(embedding, points=CLICK)
    iou.sum().backward()
    assert all(p.grad is not None for p in model.mask_scorer.parameters())
    hyper = model.mask_decoder.output_hypernetworks_mlps[1].layers[0].weight
    assert hyper.grad is None or not hyper.grad.any()


def test_interior_cells_are_those_farthest_from_the_background() -> None:
    region = torch.zeros(3, 9, 12, dtype=torch.bool)
    region[0, 1:8, 2:9] = True  # a 7 x 7 square: its centre
    region[1, 0:3, :] = True  # a band on the grid's top border, which counts as outside
    region[2, 4, 4] = True  # a single cell: itself
    cells = interior_cells(region)
    assert cells[0].nonzero().tolist() == [[4, 5]]
    assert cells[1].nonzero().tolist() == [[1, x] for x in range(1, 11)]
    assert cells[2].nonzero().tolist() == [[4, 4]]
    assert not interior_cells(torch.zeros(1, 5, 5, dtype=torch.bool)).any()


def test_first_clicks_go_to_the_interior_for_the_configured_share() -> None:
    targets = torch.zeros(400, 16, 16, dtype=torch.bool)
    targets[:, 2:13, 3:14] = True  # an 11 x 11 square: its interior-most cell is (7, 8)
    scale = 4.0
    for share, low, high in [(0.0, 0.0, 0.05), (0.5, 0.4, 0.6), (1.0, 1.0, 1.0)]:
        points = first_clicks(targets, scale, torch.Generator().manual_seed(0), share)
        cells = (points / scale).floor().long()
        assert targets[torch.arange(400), cells[:, 1], cells[:, 0]].all()
        central = ((cells[:, 0] == 8) & (cells[:, 1] == 7)).float().mean().item()
        assert low <= central <= high, (share, central)
