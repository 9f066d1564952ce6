"""``segany annotate import`` / ``export``: SA-1B and COCO files in as proposals, accepted masks out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from segany.app.mask_checks import bbox_xywh
from segany.cli import main
from segany.formats import get_writer, read_sa1b
from segany.formats import rle as rle_utils
from segany.store.storage import NewAnnotation, Storage

H, W = 120, 160


def _record(mask: np.ndarray) -> dict:
    rle = rle_utils.encode(mask)[0]
    return {
        "segmentation": rle,
        "area": rle_utils.area(rle),
        "bbox": bbox_xywh(rle),
        "predicted_iou": 0.9,
        "point_coords": [[1.0, 2.0]],
        "stability_score": 0.95,
        "crop_box": [0, 0, W, H],
    }


def _box(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_import_sa1b_and_coco(images_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = tmp_path / "files"
    sa1b = get_writer("sa1b")
    sa1b.write(files, "sub/c.png", 0, H, W, [_record(_box(10, 10, 40, 30)), _record(_box(50, 50, 60, 90))])
    coco = {
        "images": [
            {"id": 7, "file_name": "a.png", "width": W, "height": H},
            {"id": 8, "file_name": "missing.png", "width": W, "height": H},
        ],
        "annotations": [
            {
                "id": 1,
                "image_id": 7,
                "category_id": 3,
                "segmentation": rle_utils.encode(_box(0, 0, 20, 20))[0],
            },
            {"id": 2, "image_id": 7, "category_id": 3, "segmentation": [[30, 30, 60, 30, 60, 50, 30, 50]]},
            {
                "id": 3,
                "image_id": 7,
                "category_id": 3,
                "segmentation": {"size": [H, W + 1], "counts": [0, 5]},
            },
            {"id": 4, "image_id": 8, "category_id": 3, "segmentation": rle_utils.encode(_box(0, 0, 2, 2))[0]},
        ],
        "categories": [{"id": 3, "name": "cup"}],
    }
    (files / "instances.json").write_text(json.dumps(coco))
    db = tmp_path / "annotations.sqlite"
    inputs = [str(files / "sub" / "c.json"), str(files / "instances.json")]
    code = main(["annotate", "import", "--db", str(db), "--images", str(images_dir), *inputs])
    assert code == 0
    err = capsys.readouterr().err
    assert "4 proposals for 2 images" in err and "2 skipped" in err
    assert "missing.png" in err and "mask 2 of a.png" in err

    storage = Storage(db)
    c, a = storage.image_by_path("sub/c.png"), storage.image_by_path("a.png")
    assert (c.width, c.height) == (W, H)
    imported_c = storage.annotations(c.id)
    assert [(x.status, x.source, x.label) for x in imported_c] == [("proposed", "import", "")] * 2
    assert np.array_equal(rle_utils.decode(imported_c[0].mask), _box(10, 10, 40, 30))
    imported_a = storage.annotations(a.id)
    assert [x.label for x in imported_a] == ["cup", "cup"]
    polygon = rle_utils.decode(imported_a[1].mask)
    assert polygon[40, 45] and not polygon[10, 10] and imported_a[1].bbox[:2] == [30, 30]


def test_import_refuses_other_files(images_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    db = str(tmp_path / "x.sqlite")
    assert main(["annotate", "import", "--db", db, "--images", str(images_dir), str(other)]) == 1
    assert "neither an SA-1B file" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    assert main(["annotate", "import", "--db", db, "--images", str(images_dir), str(broken)]) == 1
    assert "as JSON" in capsys.readouterr().err
    assert main(["annotate", "import", "--db", db, "--images", str(tmp_path / "none"), str(other)]) == 1


def test_import_names_each_image_once(images_dir: Path, tmp_path: Path) -> None:
    files = tmp_path / "files"
    files.mkdir()
    names = [
        "a.png",
        "./a.png",
        "sub/../a.png",
        str(images_dir / "a.png"),
        "sub\\c.png",
        "../secret.png",
        "/etc/passwd",
    ]
    coco = {
        "images": [{"id": i + 1, "file_name": name, "width": W, "height": H} for i, name in enumerate(names)],
        "annotations": [
            {
                "id": i + 1,
                "image_id": i + 1,
                "category_id": 1,
                "segmentation": rle_utils.encode(_box(0, 0, 9, 9))[0],
            }
            for i in range(len(names))
        ],
        "categories": [{"id": 1, "name": "x"}],
    }
    (files / "instances.json").write_text(json.dumps(coco))
    db = tmp_path / "annotations.sqlite"
    assert (
        main(
            [
                "annotate",
                "import",
                "--db",
                str(db),
                "--images",
                str(images_dir),
                str(files / "instances.json"),
            ]
        )
        == 0
    )
    storage = Storage(db)
    assert sorted(storage.image_paths()) == ["a.png", "sub/c.png"]
    assert len(storage.annotations(storage.image_by_path("a.png").id)) == 4
    out = tmp_path / "out"
    for annotation in storage.annotations(storage.image_by_path("a.png").id):
        storage.update_annotation(annotation.id, status="accepted")
    assert main(["annotate", "export", "--db", str(db), "--format", "coco", "--out", str(out)]) == 0


def test_import_is_all_or_nothing(images_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    files = tmp_path / "files"
    get_writer("sa1b").write(files, "a.png", 0, H, W, [_record(_box(10, 10, 40, 30))])
    (files / "broken.json").write_text("{")
    db = tmp_path / "annotations.sqlite"
    args = ["annotate", "import", "--db", str(db), "--images", str(images_dir)]
    assert main([*args, str(files / "a.json"), str(files / "broken.json")]) == 1
    assert "broken.json" in capsys.readouterr().err
    assert Storage(db).image_paths() == set()  # the good file's masks were not stored either
    assert main([*args, str(files / "a.json")]) == 0
    storage = Storage(db)
    assert len(storage.annotations(storage.image_by_path("a.png").id)) == 1


def test_export_then_import_keeps_labels(images_dir: Path, tmp_path: Path) -> None:
    db = tmp_path / "annotations.sqlite"
    storage = Storage(db)
    storage.add_images([("a.png", W, H)])
    a = storage.image_by_path("a.png")
    for label, mask in (("cat", _box(5, 5, 50, 50)), ("dog", _box(60, 60, 70, 100))):
        rle = rle_utils.encode(mask)[0]
        storage.add_annotations(a.id, [NewAnnotation(rle, rle_utils.area(rle), bbox_xywh(rle), label=label)])
    for format, exported in (("sa1b", "a.json"), ("coco", "instances.json")):
        out = tmp_path / format
        assert main(["annotate", "export", "--db", str(db), "--format", format, "--out", str(out)]) == 0
        other = tmp_path / f"{format}.sqlite"
        assert (
            main(["annotate", "import", "--db", str(other), "--images", str(images_dir), str(out / exported)])
            == 0
        )
        again = Storage(other)
        assert [x.label for x in again.annotations(again.image_by_path("a.png").id)] == ["cat", "dog"]


def test_export_with_images(images_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    db = tmp_path / "annotations.sqlite"
    storage = Storage(db)
    storage.add_images([("sub/c.png", W, H), ("a.png", W, H)])
    c = storage.image_by_path("sub/c.png")
    for status, label, mask in [
        ("accepted", "cat", _box(5, 5, 50, 50)),
        ("proposed", "", _box(0, 0, 9, 9)),
        ("accepted", "dog", _box(60, 60, 70, 100)),
    ]:
        rle = rle_utils.encode(mask)[0]
        storage.add_annotations(
            c.id, [NewAnnotation(rle, rle_utils.area(rle), bbox_xywh(rle), label=label, status=status)]
        )
    out = tmp_path / "out"
    args = ["annotate", "export", "--db", str(db), "--format", "sa1b", "--out", str(out)]
    assert main([*args, "--images", str(images_dir)]) == 0
    assert "2 masks of 1 images" in capsys.readouterr().err
    info, anns = read_sa1b(out / "sub" / "c.json")
    assert info["file_name"] == "sub/c.png"
    assert [rle_utils.decode(a["segmentation"]).sum() for a in anns] == [45 * 45, 10 * 40]
    assert [a["label"] for a in anns] == ["cat", "dog"] and not (out / "labels.json").exists()
    assert (out / "images" / "sub" / "c.png").read_bytes() == (images_dir / "sub" / "c.png").read_bytes()
    assert not (out / "images" / "a.png").exists()

    assert (
        main(
            [
                "annotate",
                "export",
                "--db",
                str(tmp_path / "nope.sqlite"),
                "--format",
                "coco",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "not found" in capsys.readouterr().err


def test_serve_form_parses_options_before_and_after(
    monkeypatch: pytest.MonkeyPatch, images_dir: Path
) -> None:
    from segany.cli import annotate, build_parser

    seen = {}
    monkeypatch.setattr(annotate, "_serve", lambda args: seen.setdefault("args", args) and 0)
    for argv in (
        ["annotate", "--port", "9001", str(images_dir), "--token", "t"],
        ["annotate", "serve", str(images_dir), "--port", "9001", "--token", "t"],
    ):
        seen.clear()
        args = build_parser().parse_args(argv)
        args.run(args)
        served = seen["args"]
        assert (served.images_dir, served.port, served.token, served.db, served.host) == (
            str(images_dir),
            9001,
            "t",
            "annotations.sqlite",
            "127.0.0.1",
        )


def test_serve_refuses_a_missing_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["annotate", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_serve_refuses_a_busy_port_before_creating_anything(
    images_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    import socket

    with socket.socket() as other:  # another program listening
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        db = tmp_path / "fresh.sqlite"
        assert main(["annotate", str(images_dir), "--db", str(db), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port}" in err and "--port" in err and "open http" not in err
    assert "Traceback" not in err and not db.exists()
