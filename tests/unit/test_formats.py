"""Mask writers and readers: exact round trips (SA-1B, COCO, PNG), close ones (YOLO), resume and atomicity."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from segany.formats import WRITERS, get_writer, read_coco, read_png_folder, read_sa1b, read_yolo
from segany.formats import rle as rle_utils

H, W = 120, 160
FIELDS = ("area", "bbox", "predicted_iou", "point_coords", "stability_score", "crop_box")
EXACT = ("sa1b", "coco", "png")


def _ellipse(center: tuple[int, int], axes: tuple[int, int], angle: float = 0.0) -> np.ndarray:
    canvas = np.zeros((H, W), np.uint8)
    cv2.ellipse(canvas, center, axes, angle, 0, 360, 1, -1)
    return canvas > 0


def _rectangle(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def convex_masks() -> list[np.ndarray]:
    """Simple convex shapes, inside the image and touching its border, that a polygon describes well."""
    return [
        _ellipse((50, 40), (30, 18), 25.0),
        _ellipse((120, 80), (25, 30)),
        _rectangle(10, 70, 60, 110),
        _rectangle(0, 0, 40, 30),  # touches the top-left corner
        _rectangle(100, 90, W, H),  # touches the bottom and right edges
    ]


def all_masks() -> list[np.ndarray]:
    """Convex shapes plus the awkward ones: empty, a ring with a hole, two separate parts, every pixel."""
    ring = _ellipse((80, 60), (40, 30)) & ~_ellipse((80, 60), (15, 10))
    two_parts = _rectangle(5, 5, 20, 20) | _ellipse((140, 20), (10, 8))
    return [
        *convex_masks(),
        np.zeros((H, W), bool),
        ring,
        two_parts,
        np.ones((H, W), bool),
    ]


def make_records(masks: list[np.ndarray], seed: int = 0) -> list[dict]:
    """Records as the automatic generator returns them, with full-precision float scores."""
    rng = np.random.default_rng(seed)
    records = []
    for mask in masks:
        ys, xs = np.nonzero(mask)
        bbox = (
            [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1] if len(xs) else [0] * 4
        )
        records.append(
            {
                "segmentation": mask,
                "area": int(mask.sum()),
                "bbox": bbox,
                "predicted_iou": float(rng.random()),
                "point_coords": [[float(rng.random() * W), float(rng.random() * H)]],
                "stability_score": float(rng.random()),
                "crop_box": [0, 0, W, H],
            }
        )
    return records


def in_form(records: list[dict], form: str) -> list[dict]:
    """The same records with ``segmentation`` as a binary mask, an uncompressed RLE or a COCO RLE."""
    convert = {
        "binary_mask": lambda m: m,
        "uncompressed_rle": rle_utils.uncompressed,
        "coco_rle": lambda m: rle_utils.encode(m)[0],
    }[form]
    return [{**r, "segmentation": convert(r["segmentation"])} for r in records]


def read_back(name: str, out_dir: Path, image_name: str) -> list[dict]:
    """Records with binary masks, read from what writer ``name`` wrote for one image."""
    if name == "sa1b":
        _, anns = read_sa1b(get_writer(name).done_path(out_dir, image_name))
    elif name == "coco":
        get_writer(name).finish(out_dir)
        [(_, anns)] = read_coco(out_dir / "instances.json")
    else:
        stem = Path(image_name).with_suffix("")
        return read_png_folder(out_dir / stem)
    return [{**a, "segmentation": rle_utils.decode(a["segmentation"])} for a in anns]


def output_files(out_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out_dir)): p.read_bytes() for p in sorted(out_dir.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("name", EXACT)
def test_exact_formats_round_trip_masks_and_fields(name, tmp_path):
    records = make_records(all_masks())
    get_writer(name).write(tmp_path, "sub/dog.jpg", 7, H, W, records)
    back = read_back(name, tmp_path, "sub/dog.jpg")
    assert len(back) == len(records)
    for got, want in zip(back, records, strict=True):
        assert got["segmentation"].shape == (H, W)
        np.testing.assert_array_equal(got["segmentation"], want["segmentation"])
        for field in FIELDS:
            assert got[field] == want[field], field


def test_sa1b_schema(tmp_path):
    get_writer("sa1b").write(tmp_path, "dog.jpg", 3, H, W, make_records(convex_masks()))
    image, anns = read_sa1b(tmp_path / "dog.json")
    assert image == {"image_id": 3, "width": W, "height": H, "file_name": "dog.jpg"}
    assert [a["id"] for a in anns] == list(range(len(anns)))
    assert set(anns[0]) == {"id", "segmentation", *FIELDS}
    assert anns[0]["segmentation"]["size"] == [H, W]
    assert isinstance(anns[0]["segmentation"]["counts"], str)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_segmentation_forms_write_identical_files(name, tmp_path):
    records = make_records(all_masks())
    written = []
    for form in ("binary_mask", "uncompressed_rle", "coco_rle"):
        out_dir = tmp_path / form
        writer = get_writer(name)
        writer.write(out_dir, "dog.jpg", 1, H, W, in_form(records, form))
        writer.finish(out_dir)
        written.append(output_files(out_dir))
    assert written[0]
    assert written[0] == written[1] == written[2]


def test_coco_folder_has_unique_ids_and_loads_in_pycocotools(tmp_path, capsys):
    writer = get_writer("coco")
    images = {"c.jpg": (0, convex_masks()), "a.jpg": (1, all_masks()), "sub/b.png": (2, convex_masks()[:2])}
    # Written out of id order, as a resumed or parallel run would; finish orders by image id.
    for image_name, (image_id, masks) in images.items():
        writer.write(tmp_path, image_name, image_id + 10, H, W, make_records(masks, seed=image_id))
    writer.finish(tmp_path)

    coco = COCO(str(tmp_path / "instances.json"))
    capsys.readouterr()  # pycocotools prints progress lines
    ann_ids = coco.getAnnIds()
    assert len(ann_ids) == len(set(ann_ids)) == sum(len(m) for _, m in images.values())
    assert coco.getImgIds() == [10, 11, 12]
    assert coco.loadCats(1) == [{"id": 1, "name": "object"}]
    for image_name, (image_id, masks) in images.items():
        assert coco.loadImgs(image_id + 10)[0]["file_name"] == image_name
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id + 10))
        assert len(anns) == len(masks)
        for ann, mask in zip(anns, masks, strict=True):
            assert ann["category_id"] == 1 and ann["iscrowd"] == 0
            assert ann["score"] == ann["predicted_iou"]
            np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
    assert [image["id"] for image, _ in read_coco(tmp_path / "instances.json")] == [10, 11, 12]


def test_coco_finish_rejects_a_shared_image_id(tmp_path):
    writer = get_writer("coco")
    for image_name in ("a.jpg", "b.jpg"):
        writer.write(tmp_path, image_name, 5, H, W, make_records(convex_masks()[:1]))
    with pytest.raises(ValueError, match="share image id 5"):
        writer.finish(tmp_path)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_yolo_polygons_cover_convex_masks(tmp_path):
    masks = convex_masks()
    get_writer("yolo").write(tmp_path, "sub/dog.jpg", 0, H, W, make_records(masks))
    path = tmp_path / "sub" / "dog.txt"
    lines = path.read_text().splitlines()
    assert len(lines) == len(masks)
    for line in lines:
        values = line.split()
        assert values[0] == "0" and len(values) % 2 == 1 and len(values) >= 7
        assert all(0.0 <= float(v) <= 1.0 for v in values[1:])
    for got, want in zip(read_yolo(path, H, W), masks, strict=True):
        assert _iou(got, want) >= 0.9


def test_yolo_writes_one_line_per_part_and_none_for_empty_masks(tmp_path):
    two_parts = _rectangle(5, 5, 20, 20) | _ellipse((140, 20), (10, 8))
    single_pixel = _rectangle(60, 60, 61, 61)
    records = make_records([two_parts, np.zeros((H, W), bool), single_pixel])
    get_writer("yolo").write(tmp_path, "dog.jpg", 0, H, W, records)
    back = read_yolo(tmp_path / "dog.txt", H, W)
    assert len(back) == 2
    assert _iou(back[0] | back[1], two_parts) >= 0.9


def test_yolo_rejects_a_malformed_line(tmp_path):
    (tmp_path / "bad.txt").write_text("0 0.1 0.2 0.3\n")
    with pytest.raises(ValueError, match="line 1"):
        read_yolo(tmp_path / "bad.txt", H, W)


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_done_path_exists_exactly_after_write(name, tmp_path):
    writer = get_writer(name)
    done = writer.done_path(tmp_path, "sub/dog.jpg")
    assert done.is_relative_to(tmp_path / "sub") or done.is_relative_to(tmp_path / ".coco_parts" / "sub")
    assert not done.exists()
    writer.write(tmp_path, "sub/dog.jpg", 0, H, W, make_records(convex_masks()))
    assert done.is_file()
    assert not writer.done_path(tmp_path, "sub/cat.jpg").exists()


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_interrupted_write_leaves_nothing_that_looks_done(name, tmp_path, monkeypatch):
    writer = get_writer(name)
    records = make_records(convex_masks())
    # A finished earlier run, then a rerun of the same image killed while writing.
    writer.write(tmp_path / "rerun", "dog.jpg", 0, H, W, records)
    real_replace = os.replace

    def killed(src, dst):
        if str(dst).endswith((".json", ".csv", ".txt")):
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        writer.write(tmp_path / "fresh", "dog.jpg", 0, H, W, records)
    assert not writer.done_path(tmp_path / "fresh", "dog.jpg").exists()
    assert not list(tmp_path.rglob("*.tmp"))
    if name == "png":
        # The old metadata.csv must go before the masks are replaced.
        with pytest.raises(KeyboardInterrupt):
            writer.write(tmp_path / "rerun", "dog.jpg", 0, H, W, records[:2])
        assert not writer.done_path(tmp_path / "rerun", "dog.jpg").exists()


def test_png_rewrite_with_fewer_masks_removes_stale_pngs(tmp_path):
    writer = get_writer("png")
    writer.write(tmp_path, "dog.jpg", 0, H, W, make_records(convex_masks()))
    writer.write(tmp_path, "dog.jpg", 0, H, W, make_records(convex_masks()[:2]))
    assert sorted(p.name for p in (tmp_path / "dog").iterdir()) == ["0.png", "1.png", "metadata.csv"]
    assert (tmp_path / "dog" / "metadata.csv").read_text().splitlines()[0].startswith("id,area,bbox_x0,")


@pytest.mark.parametrize("name", sorted(WRITERS))
def test_writers_reject_bad_input(name, tmp_path):
    writer = get_writer(name)
    records = make_records(convex_masks()[:1])
    with pytest.raises(ValueError, match="does not match the image size"):
        writer.write(tmp_path, "dog.jpg", 0, H + 1, W, records)
    with pytest.raises(ValueError, match="lacks stability_score"):
        writer.write(
            tmp_path, "dog.jpg", 0, H, W, [{k: v for k, v in records[0].items() if k != "stability_score"}]
        )
    with pytest.raises(ValueError, match="relative to the input folder"):
        writer.done_path(tmp_path, "../dog.jpg")


def test_registry_names_match_and_unknown_name_lists_choices():
    for name, cls in WRITERS.items():
        assert cls.name == name and get_writer(name).name == name
    with pytest.raises(ValueError, match="unknown output format 'bmp'; choose one of sa1b, coco, png, yolo"):
        get_writer("bmp")


def test_atomic_write_uses_unique_temporary_files_and_cleans_up(tmp_path):
    from segany.files import atomic_write

    seen = []

    def fail(tmp):
        seen.append(tmp)
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    for _ in range(2):
        with pytest.raises(OSError, match="disk full"):
            atomic_write(tmp_path / "c.png", fail)
    assert seen[0] != seen[1] and all(p.parent == tmp_path for p in seen)
    assert list(tmp_path.iterdir()) == []  # neither a temporary file nor a partial target
    atomic_write(tmp_path / "c.png", lambda tmp: tmp.write_bytes(b"done"))
    assert [p.name for p in tmp_path.iterdir()] == ["c.png"] and (tmp_path / "c.png").read_bytes() == b"done"


def test_atomic_writes_are_readable_as_open_makes_them(tmp_path):
    import os

    from segany.formats.base import atomic_write_json

    previous = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"x": 1})
    finally:
        os.umask(previous)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
