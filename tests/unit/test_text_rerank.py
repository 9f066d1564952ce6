"""Ranking automatic masks by a phrase: the mask that shows what the phrase names comes first."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from segany.errors import PromptError
from segany.formats import rle
from segany.text import rank_by_text
from support import ColourTextEncoder


def _scene() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A grey 90 x 120 image with a red square, a blue disk and a green bar, and their masks."""
    image = np.full((90, 120, 3), 128, np.uint8)
    yy, xx = np.mgrid[:90, :120]
    masks = {
        "red": (yy >= 10) & (yy < 40) & (xx >= 10) & (xx < 40),
        "blue": (yy - 60) ** 2 + (xx - 80) ** 2 < 15**2,
        "green": (yy >= 70) & (yy < 80) & (xx >= 5) & (xx < 50),
    }
    for colour, mask in masks.items():
        image[mask] = ColourTextEncoder.COLOURS[colour]
    return image, masks


def _record(segmentation, name: str) -> dict:
    return {"segmentation": segmentation, "name": name, "predicted_iou": 0.9}


@pytest.mark.parametrize("form", ["bool", "coco_rle", "uncompressed_rle"])
def test_the_named_colour_ranks_first_for_every_segmentation_form(form) -> None:
    image, masks = _scene()
    encode = {
        "bool": lambda m: m,
        "coco_rle": lambda m: rle.encode(m)[0],
        "uncompressed_rle": rle.uncompressed,
    }[form]
    records = [_record(encode(mask), name) for name, mask in masks.items()]
    before = copy.deepcopy(records)
    encoder = ColourTextEncoder()
    for phrase in ("red", "green", "blue"):
        ranked = rank_by_text(image, records, phrase, encoder)
        assert ranked[0]["name"] == phrase
        scores = [r["text_score"] for r in ranked]
        assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
        assert ranked[0]["predicted_iou"] == 0.9  # the other fields come along
    assert encoder.text_calls == [["red"], ["green"], ["blue"]]  # one text pass per phrase
    # The caller's records are left as they were.
    assert [sorted(r) for r in records] == [sorted(r) for r in before]


def test_tight_and_wide_crops_and_empty_masks() -> None:
    image, masks = _scene()
    records = [_record(np.zeros((90, 120), bool), "empty")] + [
        _record(mask, name) for name, mask in masks.items()
    ]
    encoder = ColourTextEncoder()
    for expand in (1.0, 2.0):
        ranked = rank_by_text(image, records, "blue", encoder, expand=expand, batch_size=2)
        assert ranked[0]["name"] == "blue"
        assert ranked[-1]["name"] == "empty" and ranked[-1]["text_score"] == -1.0
    assert rank_by_text(image, [], "blue", encoder) == []
    with pytest.raises(PromptError, match="text prompt is empty"):
        rank_by_text(image, records, " ", encoder)
    with pytest.raises(ValueError, match="does not match the image size"):
        rank_by_text(image[:50], records, "blue", encoder)
