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


def test_object_crops_centre_an_object_at_the_drawn_context() -> None:
    from segany.training.object_crops import ObjectCropConfig, ObjectCrops, crop_around_object

    scene = Scene(np.zeros((400, 600, 3), np.uint8), np.zeros((1, 400, 600), dtype=bool))
    scene.masks[0, 200:220, 300:340] = True  # 20 x 40 px
    scene.image[scene.masks[0]] = (255, 0, 0)
    config = ObjectCropConfig(size=128, min_context=2.0, max_context=2.0)
    view = crop_around_object(scene, np.random.default_rng(0), config)
    assert view.image.shape == (128, 128, 3) and view.masks.shape == (1, 128, 128)
    rows, cols = np.nonzero(view.masks[0])
    # A window of 2 x 40 = 80 px shown at 128 px: the object spans 40 * 1.6 = 64 columns, 32 rows.
    assert cols.max() - cols.min() + 1 == 64 and rows.max() - rows.min() + 1 == 32
    inner = view.image[rows.min() + 2 : rows.max() - 1, cols.min() + 2 : cols.max() - 1]
    assert (inner == (255, 0, 0)).all()  # the mask stays on its pixels (edges are interpolated)
    crops = ObjectCrops([scene], seed=3, config=ObjectCropConfig(size=128))
    assert np.array_equal(crops[5].image, crops[5].image) and not np.array_equal(crops[5].image, crops[6].image)
    with pytest.raises(DatasetError, match="1 <= min_context <= max_context"):
        ObjectCropConfig(min_context=3.0, max_context=2.0)


def test_flip_mirrors_scenes_before_their_view_and_zero_keeps_old_views() -> None:
    from segany.training.object_crops import ObjectCropConfig, ObjectCrops
    from segany.training.train_config import DataSource, TrainConfigError

    scene = _red_rectangle_scene()  # the object spans columns 10-49 of 80
    config = ScaleJitterConfig(size=80, min_scale=1.0, max_scale=1.0, min_pixels=5)
    plain, always = ScaleJitter([scene], seed=2, config=config), ScaleJitter([scene], seed=2, config=config, flip=1.0)
    sides = set()
    for index in range(6):
        cols = np.nonzero(always[index].masks[0].any(axis=0))[0]
        assert (cols.min(), cols.max()) == (30, 69)  # mirrored: column x moved to 79 - x
        assert (always[index].image[always[index].masks[0]] == (255, 0, 0)).all()
        assert np.array_equal(plain[index].masks, jitter_scene(scene, _view_rng(2, index), config).masks)
    ramp = Scene(scene.image.copy(), scene.masks)
    ramp.image[..., 1] = np.arange(80, dtype=np.uint8)[None, :] * 3  # green grows to the right
    crops = ObjectCrops([ramp], seed=4, config=ObjectCropConfig(size=64), flip=0.5)
    for index in range(40):
        green = crops[index].image[:5, :20, 1].astype(int)  # a patch that is always inside the image
        sides.add(int(np.sign(green[:, -1] - green[:, 0]).mean()))
    assert sides == {-1, 1}, "a flip of 0.5 should give views both ways round"
    with pytest.raises(DatasetError, match="flip"):
        ScaleJitter([scene], flip=1.5)
    with pytest.raises(TrainConfigError, match="scale_jitter or object_crops"):
        DataSource("synthetic", flip=0.5)


def _view_rng(seed: int, index: int) -> np.random.Generator:
    """The generator a view draws with after picking its scene from a one-scene source."""
    rng = np.random.default_rng([seed, index, ScaleJitter.stream])
    rng.integers(1)
    return rng
