"""Datasets give exact masks from COCO and SA-1B files; copy-paste and mixtures are reproducible and sound."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segany.errors import DatasetError
from segany.formats import rle as rle_utils
from segany.training.copy_paste import CopyPaste, CopyPasteConfig
from segany.training.datasets import (
    CocoInstances,
    Mixture,
    Sa1bFolder,
    SyntheticDataset,
    open_dataset,
)
from segany.training.synthetic import Scene, SceneConfig, SyntheticScenes
from support import SHARED_DATA

H, W = 30, 40


def _image(seed: int, height: int = H, width: int = W) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _blob(seed: int) -> np.ndarray:
    """An irregular ``H x W`` mask, so that run-length decoding errors (order, offsets) would show."""
    mask = np.random.default_rng(seed).random((H, W)) < 0.3
    mask[0, 0] = seed % 2 == 0  # both starts of an uncompressed RLE: a run of 0s and an empty one
    return mask


def _rectangles(*boxes: tuple[int, int, int, int]) -> np.ndarray:
    """The mask a COCO polygon around each pixel box ``(x0, y0, x1, y1)`` (x1, y1 exclusive) covers."""
    mask = np.zeros((H, W), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        mask[y0:y1, x0:x1] = True
    return mask


def _polygon(x0: int, y0: int, x1: int, y1: int) -> list[float]:
    return [x0, y0, x1, y0, x1, y1, x0, y1]


@pytest.fixture
def coco(tmp_path: Path) -> Path:
    """``tmp/annotations/instances_val.json`` + ``tmp/val/*.png``: a.png with three objects (a two-part
    polygon, a compressed and an uncompressed RLE) and a crowd; b.png one; c.png a crowd only; d.png none."""
    (tmp_path / "val").mkdir()
    (tmp_path / "annotations").mkdir()
    for seed, name in enumerate("abcd"):
        Image.fromarray(_image(seed)).save(tmp_path / "val" / f"{name}.png")
    images = [{"id": i + 1, "file_name": f"{n}.png", "height": H, "width": W} for i, n in enumerate("abcd")]
    crowd = {"segmentation": rle_utils.uncompressed(_blob(9)), "iscrowd": 1}
    annotations = [
        {"image_id": 1, "segmentation": [_polygon(2, 2, 6, 5), _polygon(10, 10, 14, 12)], "iscrowd": 0},
        {"image_id": 1, "segmentation": rle_utils.encode(_blob(1))[0], "iscrowd": 0},
        {"image_id": 1, "segmentation": rle_utils.uncompressed(_blob(2)), "iscrowd": 0},
        {"image_id": 1, **crowd},
        {"image_id": 2, "segmentation": [_polygon(0, 0, W, H)]},
        {"image_id": 3, **crowd},
    ]
    document = {
        "images": images,
        "annotations": [{"id": i + 1, "category_id": 1, **a} for i, a in enumerate(annotations)],
        "categories": [{"id": 1, "name": "object"}],
    }
    (tmp_path / "annotations" / "instances_val.json").write_text(json.dumps(document))
    return tmp_path


def test_coco_masks_are_exact_and_crowds_skipped(coco: Path) -> None:
    dataset = CocoInstances(coco / "annotations" / "instances_val.json", coco / "val")
    assert len(dataset) == 2
    assert [dataset.name(0), dataset.name(1), dataset.name(-1)] == ["a.png", "b.png", "b.png"]
    first = dataset[0]
    assert np.array_equal(first.image, _image(0))
    expected = np.stack([_rectangles((2, 2, 6, 5), (10, 10, 14, 12)), _blob(1), _blob(2)])
    assert first.masks.dtype == np.bool_ and np.array_equal(first.masks, expected)
    assert np.array_equal(dataset[1].masks, np.ones((1, H, W), dtype=bool))
    with pytest.raises(IndexError):
        dataset[2]


def test_slices_are_lazy_views_with_names(coco: Path) -> None:
    dataset = CocoInstances(coco / "annotations" / "instances_val.json", coco / "val")
    view = dataset[::-1]
    assert len(view) == 2 and view.name(0) == "b.png"
    assert np.array_equal(view[1].masks, dataset[0].masks)


def test_open_dataset_finds_coco_from_the_json_or_the_image_folder(coco: Path, tmp_path: Path) -> None:
    for spec in (coco / "annotations" / "instances_val.json", coco / "val"):
        dataset = open_dataset(str(spec))
        assert isinstance(dataset, CocoInstances) and dataset.images == coco / "val" and len(dataset) == 2
    # A JSON outside an annotations/ folder: images beside it.
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "labels.json").write_text((coco / "annotations" / "instances_val.json").read_text())
    Image.fromarray(_image(1)).save(flat / "b.png")
    dataset = open_dataset(str(flat / "labels.json"))
    assert dataset.name(1) == "b.png" and np.array_equal(dataset[1].image, _image(1))


def test_coco_subset_script_keeps_the_first_photos_and_only_theirs(coco: Path, tmp_path: Path) -> None:
    """``scripts/coco_subset.py`` (the data-scaling probe's cut) gives a split that reads like the source's head."""
    script = Path(__file__).parents[2] / "scripts" / "coco_subset.py"
    out = tmp_path / "subset"
    done = subprocess.run(
        [sys.executable, str(script), str(coco / "val"), "1", str(out)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    subset, source = open_dataset(str(out / "val")), open_dataset(str(coco / "val"))
    assert len(subset) == 1 and subset.name(0) == "a.png"
    assert np.array_equal(subset[0].masks, source[0].masks) and np.array_equal(
        subset[0].image, source[0].image
    )
    refused = subprocess.run(
        [sys.executable, str(script), str(coco / "val"), "0", str(out)], capture_output=True, text=True
    )
    assert (
        refused.returncode != 0
        and refused.stderr.strip() == "error: The subset needs at least 1 photo, got 0."
    )


def test_coco_errors_name_the_file(coco: Path) -> None:
    dataset = open_dataset(str(coco / "val"))
    (coco / "val" / "a.png").write_bytes(b"not an image")
    with pytest.raises(DatasetError, match=r"a\.png"):
        dataset[0]
    (coco / "val" / "b.png").unlink()
    with pytest.raises(DatasetError, match=r"b\.png"):
        dataset[1]
    captions = {"images": [{"id": 1, "file_name": "a.png"}], "annotations": [{"id": 7, "image_id": 1}]}
    (coco / "annotations" / "instances_val.json").write_text(json.dumps(captions))
    with pytest.raises(DatasetError, match=r"Annotation 7 .* has no segmentation"):
        open_dataset(str(coco / "val"))
    (coco / "annotations" / "instances_val.json").write_text("{")
    with pytest.raises(DatasetError, match=r"instances_val\.json"):
        open_dataset(str(coco / "val"))


def _write_sa1b(folder: Path, stem: str, image: np.ndarray, masks: np.ndarray, file_name: str | None) -> None:
    info = {"image_id": 1, "height": image.shape[0], "width": image.shape[1]}
    if file_name:
        info["file_name"] = file_name
    annotations = [{"id": i, "segmentation": rle} for i, rle in enumerate(rle_utils.encode(masks))]
    (folder / f"{stem}.json").write_text(json.dumps({"image": info, "annotations": annotations}))


def test_sa1b_folder_reads_pairs_by_file_name_or_stem(tmp_path: Path) -> None:
    Image.fromarray(_image(0)).save(tmp_path / "sa_1.png")
    _write_sa1b(tmp_path, "sa_1", _image(0), np.stack([_blob(1), _blob(2)]), "sa_1.png")
    Image.fromarray(_image(1)).save(tmp_path / "sa_2.jpg", quality=95)
    _write_sa1b(tmp_path, "sa_2", _image(1), _blob(3)[None], None)
    dataset = open_dataset(str(tmp_path))
    assert isinstance(dataset, Sa1bFolder) and len(dataset) == 2
    assert [dataset.name(0), dataset.name(1)] == ["sa_1.png", "sa_2.jpg"]
    assert np.array_equal(dataset[0].image, _image(0))
    assert np.array_equal(dataset[0].masks, np.stack([_blob(1), _blob(2)]))
    assert dataset[1].image.shape == (H, W, 3) and np.array_equal(dataset[1].masks, _blob(3)[None])
    (tmp_path / "sa_2.jpg").unlink()
    with pytest.raises(DatasetError, match=r"sa_2\.jpg"):
        dataset[1]


def test_synthetic_specs() -> None:
    dataset = open_dataset("synthetic:seed=3, count=4, size=64")
    assert isinstance(dataset, SyntheticDataset) and len(dataset) == 4
    assert np.array_equal(dataset[2].image, SyntheticScenes(3, 64, 64)[2].image)
    assert dataset[-1].image.shape == (64, 64, 3)
    assert open_dataset("synthetic:height=32,width=48")[0].image.shape == (32, 48, 3)
    assert len(open_dataset("synthetic")) == 1000


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("synthetic:seed=1,count", "Bad synthetic dataset option"),
        ("synthetic:colour=red", "Bad synthetic dataset option"),
        ("synthetic:seed=1,seed=2", "Bad synthetic dataset option"),
        ("synthetic:seed=x", "must be an integer"),
        ("synthetic:size=64,height=32", "not both"),
        ("synthetic:size=8", "16 x 16"),
        ("synthetic:count=0", "at least 1 scene"),
        ("no/such/dataset", "not found"),
    ],
)
def test_bad_specs_are_one_sentence_errors(spec: str, message: str) -> None:
    with pytest.raises(DatasetError, match=message) as info:
        open_dataset(spec)
    assert "\n" not in str(info.value) and str(info.value).endswith(".")


def test_unusable_paths_are_errors(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DatasetError, match="not a JSON file"):
        open_dataset(str(tmp_path / "notes.txt"))
    with pytest.raises(DatasetError, match="neither COCO images"):
        open_dataset(str(tmp_path))


# --- Mixtures ---------------------------------------------------------------------------------------


def _marker_scenes(count: int, value: int) -> list[Scene]:
    return [Scene(np.full((1, 1, 3), value, np.uint8), np.zeros((0, 1, 1), bool)) for _ in range(count)]


def test_mixture_follows_its_weights_and_is_deterministic() -> None:
    sources = [_marker_scenes(1, 0), _marker_scenes(3, 1), _marker_scenes(2, 2)]
    weights = [0.2, 0.5, 0.3]
    mixture = Mixture(sources, weights, seed=5)
    draws = np.array([int(mixture[i].image[0, 0, 0]) for i in range(2000)])
    assert np.allclose(np.bincount(draws, minlength=3) / len(draws), weights, atol=0.035)
    again = Mixture(sources, weights, seed=5)
    assert all(again[i] is mixture[i] for i in (0, 17, 1999))
    assert len(mixture) == 2**31 - 1 and len(Mixture(sources, weights, seed=5, length=10)) == 10
    assert mixture.name(3).split(":")[0] in {"0", "1", "2"}


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0], "one per dataset"), ([1.0, 0.0], "positive"), ([1.0, float("nan")], "positive")],
)
def test_mixture_refuses_bad_weights(weights: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Mixture([_marker_scenes(1, 0), _marker_scenes(1, 1)], weights, seed=0)


# --- Copy-paste -------------------------------------------------------------------------------------


def _exact(**changes: object) -> CopyPasteConfig:
    """Objects pasted unchanged: scale 1, no flip, no jitter."""
    fields = dict(
        min_scale=1.0, max_scale=1.0, flip_probability=0.0, brightness=0.0, contrast=0.0, saturation=0.0
    )
    return CopyPasteConfig(**{**fields, **changes})  # type: ignore[arg-type]


def test_copy_paste_is_reproducible_disjoint_and_keeps_min_pixels() -> None:
    scenes = SyntheticDataset(seed=1, height=64, width=64, length=20, config=SceneConfig(min_visible=60))
    config = CopyPasteConfig(min_objects=2, max_objects=4, min_pixels=50, height=64, width=64)
    copy_paste = CopyPaste(scenes, backgrounds=scenes, seed=3, config=config)
    for i in range(6):
        scene = copy_paste[i]
        assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
        assert scene.masks.dtype == np.bool_ and scene.masks.shape[1:] == (64, 64)
        assert scene.masks.sum(axis=0).max(initial=0) <= 1, "masks overlap"
        assert scene.masks.sum(axis=(1, 2)).min(initial=50) >= 50
    first, again = copy_paste[4], CopyPaste(scenes, scenes, seed=3, config=config)[4]
    assert np.array_equal(first.image, again.image) and np.array_equal(first.masks, again.masks)
    assert not np.array_equal(first.image, copy_paste[5].image)
    assert not np.array_equal(first.image, CopyPaste(scenes, scenes, seed=4, config=config)[4].image)


def test_pasted_object_keeps_its_pixels_without_jitter_scale_or_flip() -> None:
    image = _image(7, 64, 64)
    mask = np.zeros((64, 64), dtype=bool)
    mask[10:30, 20:45] = np.random.default_rng(0).random((20, 25)) < 0.8
    mask[10, 20] = mask[29, 44] = True  # pin the box
    source = Scene(image, mask[None])
    scene = CopyPaste([source], None, seed=0, config=_exact(max_objects=1, height=80, width=96))[0]
    assert scene.image.shape == (80, 96, 3) and len(scene.masks) == 1
    rows = np.flatnonzero(scene.masks[0].any(axis=1))
    cols = np.flatnonzero(scene.masks[0].any(axis=0))
    pasted = scene.masks[0][rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert np.array_equal(pasted, mask[10:30, 20:45])
    window = scene.image[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    assert np.array_equal(window[pasted], image[10:30, 20:45][pasted])


def test_background_masks_are_occluded_and_dropped_when_too_small() -> None:
    background = SyntheticDataset(seed=2, height=64, width=64, length=1)[0]
    objects = [Scene(_image(1, 64, 64), np.pad(np.ones((20, 20), bool), 22)[None])]
    scene = CopyPaste(objects, [background], seed=1, config=_exact(max_objects=1, min_pixels=30))[0]
    pasted = scene.masks[-1]
    assert pasted.sum() == 400 and np.array_equal(scene.image[pasted], objects[0].image[objects[0].masks[0]])
    # The background's own masks, less what the paste covers, those left with fewer than 30 pixels dropped.
    expected = [m & ~pasted for m in background.masks if (m & ~pasted).sum() >= 30]
    assert np.array_equal(scene.masks[:-1], np.stack(expected))
    # An object as large as the background hides every earlier mask.
    full = [Scene(_image(2, 64, 64), np.ones((1, 64, 64), bool))]
    covered = CopyPaste(full, [background], seed=0, config=_exact(max_objects=1))[0]
    assert np.array_equal(covered.masks, np.ones((1, 64, 64), bool))


def test_copy_paste_refuses_bad_knobs() -> None:
    with pytest.raises(ValueError, match="min_scale"):
        CopyPasteConfig(min_scale=2.0, max_scale=1.0)
    with pytest.raises(ValueError, match="empty"):
        CopyPaste([], None, seed=0)


# --- Real data --------------------------------------------------------------------------------------

TINY_COCO = SHARED_DATA / "tiny_coco"


@pytest.mark.skipif(not (TINY_COCO / "val2017").is_dir(), reason="tiny_coco is not in shared/data")
def test_tiny_coco_val() -> None:
    dataset = open_dataset(str(TINY_COCO / "val2017"))
    assert isinstance(dataset, CocoInstances) and len(dataset) == 48  # 2 of 50 images have no objects
    scene = dataset[0]
    info = json.loads((TINY_COCO / "annotations" / "instances_val2017.json").read_text())
    image = next(i for i in info["images"] if i["file_name"] == dataset.name(0))
    objects = [a for a in info["annotations"] if a["image_id"] == image["id"] and not a["iscrowd"]]
    assert scene.image.shape == (image["height"], image["width"], 3)
    assert len(scene.masks) == len(objects) and scene.masks.any(axis=(1, 2)).all()
    # COCO's areas are of the polygons themselves; rasterised masks agree to within a few percent.
    areas = np.array([a["area"] for a in objects])
    assert np.allclose(scene.masks.sum(axis=(1, 2)), areas, rtol=0.2, atol=30)
