"""Rotation in copy-paste and large-scale jitter keep masks on the pixels they describe."""

from __future__ import annotations

import numpy as np
import pytest

from segany.errors import DatasetError
from segany.training.copy_paste import CopyPaste, CopyPasteConfig
from segany.training.scale_jitter import ScaleJitter, ScaleJitterConfig, jitter_scene
from segany.training.synthetic import Scene


def _red_rectangle_scene() -> Scene:
    image = np.zeros((60, 80, 3), np.uint8)
    masks = np.zeros((1, 60, 80), dtype=bool)
    masks[0, 10:20, 10:50] = True  # 10 rows x 40 columns
    image[masks[0]] = (255, 0, 0)
    return Scene(image, masks)


def test_copy_paste_rotation_turns_the_object_with_its_mask() -> None:
    config = CopyPasteConfig(
        min_objects=1,
        max_objects=1,
        min_scale=1,
        max_scale=1,
        flip_probability=0,
        brightness=0,
        contrast=0,
        saturation=0,
        max_rotation=90,
        height=128,
        width=128,
        min_pixels=50,
    )
    scenes = CopyPaste([_red_rectangle_scene()], None, seed=0, config=config)
    shapes = set()
    for index in range(20):
        scene = scenes[index]
        pasted = scene.masks[-1]
        rows = np.nonzero(pasted)[0]
        shapes.add(int(np.ptp(rows)))
        red = scene.image[pasted]
        # Nearest-neighbour mask inside a bilinear turn: the mask's pixels are (nearly) all object.
        assert (red[:, 0] > 150).mean() > 0.9 and (red[:, 2] < 100).mean() > 0.9
    assert max(shapes) - min(shapes) > 15, "turned copies should range from flat to tall"
    with pytest.raises(DatasetError, match="max_rotation"):
        CopyPasteConfig(max_rotation=200)


def test_scale_jitter_gives_fixed_squares_with_matching_masks() -> None:
    scene = _red_rectangle_scene()
    config = ScaleJitterConfig(size=64, min_scale=0.3, max_scale=3.0, min_pixels=5)
    areas = []
    for seed in range(30):
        out = jitter_scene(scene, np.random.default_rng(seed), config)
        assert out.image.shape == (64, 64, 3) and out.masks.shape[1:] == (64, 64)
        if len(out.masks):
            drawn = out.image[..., 0] > 127
            overlap = (drawn & out.masks[0]).sum() / (drawn | out.masks[0]).sum()
            assert overlap > 0.6  # edges blend when shrunk to a few pixels
            areas.append(int(out.masks[0].sum()))
        else:
            assert (out.image[..., 0] > 200).sum() < 20, (
                "an object's pixels are there but its mask was dropped"
            )
    assert max(areas) > 4 * min(areas), "sizes should vary widely"
    jittered = ScaleJitter([scene], seed=1, config=config)
    assert np.array_equal(jittered[3].image, jittered[3].image)
    assert not np.array_equal(jittered[3].image, jittered[4].image)
