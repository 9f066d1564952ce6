"""``segany engine round``: annotation databases and labelled folders as training data, the held-out split,
and two real rounds: one that does not improve (the base stays current), one that counts as improved."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segany.app.mask_checks import bbox_xywh
from segany.cli import main
from segany.engine.ledger import CURRENT, LEDGER
from segany.engine.outputs import LabelLog
from segany.engine.pipeline import LabelJob, LabelResult, ModelSpec
from segany.engine.rounds import ROUND_FILE
from segany.engine.split import held_out_names, position, split
from segany.engine.training_views import AnnotationDb, LabelledFolder
from segany.formats import get_writer
from segany.formats import rle as rle_utils
from segany.store.storage import NewAnnotation, Storage
from segany.training.synthetic import make_scene
from support import FIXTURE_PATH

H, W = 96, 128
NAMES = [f"img{i}.png" for i in range(6)]
# Two short steps with a 3-round simulation: enough to run every part of the loop.
TRAIN_TOML = """
steps = 2
warmup_steps = 1
lr = {lr}
precision = "float32"
masks_per_image = 4
save_every = 2
[simulation]
iterations = 3
no_point_iterations = 1
"""


def _annotation(mask: np.ndarray, status: str = "accepted") -> NewAnnotation:
    rle = rle_utils.encode(mask)[0]
    return NewAnnotation(mask=rle, area=rle_utils.area(rle), bbox=bbox_xywh(rle), status=status)


@pytest.fixture
def data(tmp_path: Path) -> dict:
    """Six synthetic images: five with accepted masks in a database (one also with a rejected and a
    proposed mask, which are not used), one without; and a labelled folder over images 3-5."""
    images = tmp_path / "images"
    images.mkdir()
    scenes = {}
    for i, name in enumerate(NAMES):
        scenes[name] = make_scene(np.random.default_rng(10 + i), H, W)
        Image.fromarray(scenes[name].image).save(images / name)
    db = Storage(tmp_path / "annotations.sqlite")
    db.add_images([(name, W, H) for name in NAMES])
    for name in NAMES[:5]:
        image = db.image_by_path(name)
        db.add_annotations(image.id, [_annotation(m) for m in scenes[name].masks])
    first = db.image_by_path(NAMES[0])
    db.add_annotations(
        first.id, [_annotation(~scenes[NAMES[0]].masks[0], s) for s in ("rejected", "proposed")]
    )

    labelled = tmp_path / "labelled"
    job = LabelJob(out_dir=str(labelled), model=ModelSpec(str(FIXTURE_PATH)))
    log, writer = LabelLog(labelled), get_writer("sa1b")
    for i, name in enumerate(NAMES[3:], start=3):
        masks = scenes[name].masks[:2]
        records = [
            {
                "segmentation": mask,
                "area": int(mask.sum()),
                "bbox": [0, 0, 1, 1],
                "predicted_iou": 0.9,
                "point_coords": [[0.0, 0.0]],
                "stability_score": 0.95,
                "crop_box": [0, 0, W, H],
            }
            for mask in masks
        ]
        writer.write(labelled, name, i, H, W, records)
        log.record(LabelResult(i, name, str(images / name), "ok", masks=len(records), height=H, width=W), job)
    return {"images": images, "db": tmp_path / "annotations.sqlite", "labelled": labelled, "scenes": scenes}


def test_annotation_db_gives_accepted_masks_by_image_path(data) -> None:
    dataset = AnnotationDb(data["db"], data["images"])
    assert [dataset.name(i) for i in range(len(dataset))] == NAMES[:5]
    assert dataset.mask_counts == [len(data["scenes"][name].masks) for name in NAMES[:5]]
    scene = dataset[0]
    truth = data["scenes"][NAMES[0]]
    assert np.array_equal(scene.image, truth.image) and np.array_equal(scene.masks, truth.masks)


def test_labelled_folder_reads_images_from_their_recorded_source(data) -> None:
    dataset = LabelledFolder(data["labelled"])
    assert [dataset.name(i) for i in range(len(dataset))] == NAMES[3:]
    scene = dataset[1]
    assert np.array_equal(scene.masks, data["scenes"][NAMES[4]].masks[:2])
    assert dataset.mask_counts == [2, 2, 2]


def test_split_is_by_name_stable_and_the_same_in_every_source(data) -> None:
    names = [f"photo_{i}.jpg" for i in range(400)]
    held = held_out_names(names, 0.2)
    assert 0.15 < len(held) / len(names) < 0.25
    assert held_out_names(names[:100], 0.2) == held & set(names[:100])  # more data moves no image
    assert held_out_names(names[:3], 0.01, must_cover=names[:3]) == {min(names[:3], key=position)}
    chosen = held_out_names(NAMES, 0.3, must_cover=NAMES[:5])
    db_train, db_test = split(AnnotationDb(data["db"], data["images"]), chosen)
    auto_train, auto_test = split(LabelledFolder(data["labelled"]), chosen)
    assert {db_test.name(i) for i in range(len(db_test))} | {
        auto_test.name(i) for i in range(len(auto_test))
    } <= chosen
    train_names = {s.name(i) for s in (db_train, auto_train) for i in range(len(s))}
    assert not train_names & chosen


def _round(tmp_path: Path, data, out: str, lr: float, *extra: str) -> int:
    config = tmp_path / f"train-{out}.toml"
    config.write_text(TRAIN_TOML.format(lr=lr))
    args = ["engine", "round", "--annotations", str(data["db"]), str(data["labelled"])]
    args += [
        "--images",
        str(data["images"]),
        "--out",
        str(tmp_path / "rounds" / out),
        "--config",
        str(config),
    ]
    args += ["--holdout", "0.3", "--max-masks-per-image", "4", *extra]
    return main(args)


def test_rounds_keep_the_base_unless_the_new_model_measures_better(data, tmp_path: Path, capsys) -> None:
    rounds = tmp_path / "rounds"
    # lr 0: the weights cannot change, so the metric cannot rise: recorded as no improvement.
    assert _round(tmp_path, data, "r1", 0.0, "--base", str(FIXTURE_PATH)) == 0
    assert "no improvement" in capsys.readouterr().out
    (first,) = [json.loads(line) for line in (rounds / LEDGER).read_text().splitlines()]
    assert first["round"] == 1 and first["improved"] is False and first["gain"] == 0.0
    assert first["current"] == str(FIXTURE_PATH.resolve()) == first["base"]
    assert first["before"]["sam"] == first["after"]["sam"]
    assert Path(first["checkpoint"]).is_file() and first["train"]["steps"] == 2
    counts = first["data"]
    assert [s["kind"] for s in counts["sources"]] == ["annotations", "labelled"]
    assert counts["sources"][0]["train_images"] + counts["sources"][0]["held_out_images"] == 5
    assert counts["held_out_images"] >= 1 and counts["sources"][1]["evaluated"] is False
    assert json.loads((rounds / CURRENT).read_text())["checkpoint"] == str(FIXTURE_PATH.resolve())
    assert json.loads((rounds / "r1" / ROUND_FILE).read_text()) == first

    # Round 2 starts from the current checkpoint (no --base) and any result counts as better.
    assert _round(tmp_path, data, "r2", 1e-4, "--min-gain", "-1") == 0
    second = [json.loads(line) for line in (rounds / LEDGER).read_text().splitlines()][1]
    assert second["round"] == 2 and second["base"] == str(FIXTURE_PATH.resolve())
    assert second["improved"] is True and second["current"] == str(rounds / "r2" / "model.safetensors")
    assert json.loads((rounds / CURRENT).read_text()) == {"checkpoint": second["current"], "as_of_round": 2}
    assert second["before"]["sam"] == first["before"]["sam"]  # the same held-out images, the same base

    capsys.readouterr()
    assert _round(tmp_path, data, "r2", 1e-4) == 1
    assert "already holds a finished round" in capsys.readouterr().err


def test_round_refuses_settings_it_owns(data, tmp_path: Path, capsys) -> None:
    config = tmp_path / "bad.toml"
    config.write_text('checkpoint = "other.pth"\n')
    args = ["engine", "round", "--annotations", str(data["db"]), "--images", str(data["images"])]
    args += ["--base", str(FIXTURE_PATH), "--out", str(tmp_path / "r"), "--config", str(config)]
    code = main(args)
    assert code == 1 and "sets checkpoint itself" in capsys.readouterr().err
