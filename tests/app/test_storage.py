"""The app's lower layers: SQLite storage, mask checks, the images folder, the background queue."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from segany.app.embeddings import BackgroundQueue, Prediction, RecentPredictions
from segany.app.mask_checks import MaskError, bbox_xywh, checked_rle, interior_point, string_counts
from segany.formats import rle as rle_utils
from segany.store import storage as storage_module
from segany.store.catalog import OutsideFolderError, image_size, inside, scan
from segany.store.storage import NewAnnotation, Storage, StorageError

H, W = 12, 16


def _mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _new(mask: np.ndarray, **fields) -> NewAnnotation:
    rle = rle_utils.encode(mask)[0]
    return NewAnnotation(mask=rle, area=rle_utils.area(rle), bbox=bbox_xywh(rle), **fields)


@pytest.fixture
def db(tmp_path: Path) -> Storage:
    storage = Storage(tmp_path / "sub" / "annotations.sqlite")
    storage.add_images([("a.png", W, H), ("b.png", W, H)])
    return storage


# --- storage -------------------------------------------------------------------------------------------


def test_schema_wal_and_foreign_keys(db: Storage) -> None:
    with db.reading() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.execute("PRAGMA user_version").fetchone()[0] == storage_module.SCHEMA_VERSION
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"images", "annotations", "sessions"} <= tables
    with pytest.raises(sqlite3.IntegrityError):
        db.add_annotations(999, [_new(_mask(0, 0, 2, 2))])
    # Reopening an existing database keeps its rows.
    assert Storage(db.path).image_paths() == {"a.png", "b.png"}


def test_images_registered_once(db: Storage) -> None:
    assert db.add_images([("a.png", W, H), ("c.png", 5, 4)]) == 1
    c = db.image_by_path("c.png")
    assert (c.width, c.height) == (5, 4)
    assert db.image(c.id) == c
    assert db.image(12345) is None
    assert [s.image.path for s in db.image_summaries()] == ["a.png", "b.png", "c.png"]


def test_annotation_round_trip_update_delete(db: Storage) -> None:
    a = db.image_by_path("a.png")
    mask = _mask(2, 3, 7, 9)
    (ann_id,) = db.add_annotations(
        a.id, [_new(mask, label="cat", prompts={"points": [[4, 5]]}, annotator="ann")]
    )
    row = db.annotation(ann_id)
    assert np.array_equal(rle_utils.decode(row.mask), mask)
    assert (row.area, row.bbox, row.label, row.source, row.status) == (
        30,
        [2, 3, 5, 6],
        "cat",
        "manual",
        "accepted",
    )
    assert row.prompts == {"points": [[4, 5]]}
    assert row.created == row.updated

    new_mask = _mask(0, 0, 3, 3)
    rle = rle_utils.encode(new_mask)[0]
    changed = db.update_annotation(
        ann_id, label="dog", status="rejected", mask=rle, area=9, bbox=[0, 0, 3, 3]
    )
    assert (changed.label, changed.status, changed.area, changed.bbox) == ("dog", "rejected", 9, [0, 0, 3, 3])
    assert np.array_equal(rle_utils.decode(changed.mask), new_mask)
    assert changed.updated >= changed.created
    assert db.update_annotation(999, label="x") is None
    with pytest.raises(ValueError, match="cannot change"):
        db.update_annotation(ann_id, source="import")

    assert db.delete_annotation(ann_id)
    assert not db.delete_annotation(ann_id)
    assert db.annotation(ann_id) is None


def test_failed_batch_stores_nothing(db: Storage) -> None:
    a = db.image_by_path("a.png")
    good = _new(_mask(0, 0, 2, 2))
    bad = NewAnnotation(mask=good.mask, area=0, bbox=[0, 0, 0, 0])  # area must be positive
    with pytest.raises(sqlite3.IntegrityError):
        db.add_annotations(a.id, [good, good, bad])
    assert db.annotations(a.id) == []


def test_prefill_replaces_only_unreviewed_proposals(db: Storage) -> None:
    a = db.image_by_path("a.png")
    first = db.add_annotations(a.id, [_new(_mask(0, 0, 2, 2), source="prefill", status="proposed")] * 2)
    kept = db.add_annotations(a.id, [_new(_mask(0, 0, 4, 4), source="import", status="proposed")])
    db.update_annotation(first[0], status="accepted")
    db.add_annotations(a.id, [_new(_mask(5, 5, 9, 9), source="prefill", status="proposed")], "prefill")
    rows = db.annotations(a.id)
    assert first[0] in {r.id for r in rows} and first[1] not in {r.id for r in rows}
    assert kept[0] in {r.id for r in rows}
    assert [s.proposed for s in db.image_summaries()] == [2, 0]
    assert [s.accepted for s in db.image_summaries()] == [1, 0]


def test_labels_most_used_first(db: Storage) -> None:
    a, b = db.image_by_path("a.png"), db.image_by_path("b.png")
    m = _mask(0, 0, 2, 2)
    db.add_annotations(a.id, [_new(m, label="tree"), _new(m, label="car"), _new(m, label="car")])
    db.add_annotations(b.id, [_new(m, label="car"), _new(m, label="tree"), _new(m, label="bike"), _new(m)])
    db.add_annotations(b.id, [_new(m, label="zebra", status="rejected")] * 5)
    assert db.labels() == ["car", "tree", "bike"]


def test_accepted_by_image(db: Storage) -> None:
    a, b = db.image_by_path("a.png"), db.image_by_path("b.png")
    m = _mask(0, 0, 2, 2)
    db.add_annotations(b.id, [_new(m, label="x"), _new(m, status="proposed"), _new(m, label="y")])
    db.add_annotations(a.id, [_new(m, status="rejected")])
    found = list(db.accepted())
    assert [(image.path, [r.label for r in rows]) for image, rows in found] == [("b.png", ["x", "y"])]


def test_sessions_follow_saves(db: Storage, monkeypatch: pytest.MonkeyPatch) -> None:
    a = db.image_by_path("a.png")
    m = _mask(0, 0, 2, 2)
    db.add_annotations(a.id, [_new(m, annotator="ann")])
    db.add_annotations(a.id, [_new(m, annotator="ann"), _new(m, annotator="bob")])
    assert [s["annotator"] for s in db.sessions()] == ["ann", "bob"]
    monkeypatch.setattr(storage_module, "SESSION_GAP_S", -1)  # every save now starts a new session
    db.add_annotations(a.id, [_new(m, annotator="ann")])
    sessions = db.sessions()
    assert [s["annotator"] for s in sessions] == ["ann", "bob", "ann"]
    assert sessions[0]["last_seen"] >= sessions[0]["started"]


def test_unusable_database_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="Cannot use"):
        Storage(junk)
    with pytest.raises(StorageError, match="is a folder"):
        Storage(tmp_path)
    newer = tmp_path / "newer.sqlite"
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA user_version=99")
    with pytest.raises(StorageError, match="newer segany"):
        Storage(newer)


# --- masks ---------------------------------------------------------------------------------------------


def test_string_counts_match_pycocotools() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        mask = rng.random((h, w)) < rng.random()
        compressed = rle_utils.encode(mask)[0]
        assert string_counts(compressed["counts"]) == rle_utils.uncompressed(mask)["counts"]


def test_checked_rle_accepts_both_forms() -> None:
    mask = _mask(3, 2, 8, 6)
    from_list = checked_rle(rle_utils.uncompressed(mask), H, W)
    from_string = checked_rle(rle_utils.encode(mask)[0], H, W)
    assert isinstance(from_list["counts"], str)
    assert np.array_equal(rle_utils.decode(from_list), mask)
    assert np.array_equal(rle_utils.decode(from_string), mask)
    assert bbox_xywh(from_list) == [3, 2, 5, 4]
    x, y = interior_point(mask)
    assert mask[int(y), int(x)]


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ({"size": [H, W + 1], "counts": [0, H * (W + 1)]}, "does not match the image size"),
        ({"size": [H, W], "counts": [H * W]}, "empty"),
        ({"size": [H, W], "counts": [10, -5, H * W - 5]}, "negative"),
        ({"size": [H, W], "counts": [10, 20]}, "cover 30 pixels"),
        ({"size": [H, W], "counts": [0, H * W * 1000]}, "cover"),
        ({"size": [H, W], "counts": "P"}, "truncated"),  # 'P' = 32: "more follows", then nothing
        ({"size": [H, W], "counts": "0 1"}, "invalid character"),
        ({"size": [H, W], "counts": "oooooooooo1"}, "malformed"),
        ({"size": [H, W], "counts": "0l0"}, "cover"),  # decodes, but not to H * W pixels
    ],
)
def test_checked_rle_refusals(rle: dict, message: str) -> None:
    with pytest.raises(MaskError, match=message):
        checked_rle(rle, H, W)


# --- images folder -------------------------------------------------------------------------------------


def test_scan_skips_non_images_hidden_and_escaping_links(images_dir: Path) -> None:
    (images_dir / ".hidden").mkdir()
    (images_dir / ".hidden" / "x.png").write_bytes((images_dir / "a.png").read_bytes())
    (images_dir / "broken.png").write_bytes(b"not a png")
    found = list(scan(images_dir))
    assert [name for name, _, _ in found] == ["a.png", "b.png", "sub/c.png"]
    assert all((w, h) == (160, 120) for _, w, h in found)
    assert [name for name, _, _ in scan(images_dir, known={"a.png"})] == ["b.png", "sub/c.png"]


def test_inside_refuses_escapes(images_dir: Path) -> None:
    assert inside(images_dir, "sub/c.png") == (images_dir / "sub" / "c.png").resolve()
    for name in ("escape.png", "../secret.png", "/etc/passwd", "", "sub/.."):
        with pytest.raises(OutsideFolderError):
            inside(images_dir, name)
    assert image_size(images_dir / "a.png") == (120, 160)


# --- background queue and recent predictions ----------------------------------------------------------


def test_background_queue_progress_and_errors() -> None:
    release = threading.Event()
    seen = []

    def run(image_id: int, prefill: bool) -> None:
        release.wait(5)
        if image_id == 3:
            raise ValueError("image 3 is broken.")
        seen.append((image_id, prefill))

    queue = BackgroundQueue(run)
    assert queue.progress() == {"pending": 0, "done": 0, "current": None, "errors": []}
    assert queue.submit([1, 2, 3], prefill=False) == 3
    assert queue.submit([2, 3], prefill=False) == 0  # still waiting: not queued twice
    release.set()
    assert queue.wait_idle(10)
    assert queue.progress() == {
        "pending": 0,
        "done": 3,
        "current": None,
        "errors": [{"image_id": 3, "detail": "image 3 is broken."}],
    }
    assert seen == [(1, False), (2, False)]
    queue.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        queue.submit([1], prefill=True)


def test_recent_predictions_keep_the_last() -> None:
    recent = RecentPredictions(capacity=2)
    logits = np.zeros((3, 4, 4), np.float32)
    first = recent.add(Prediction(1, logits))
    second = recent.add(Prediction(1, logits))
    assert recent.get(first) is not None  # now the most recent one used
    recent.add(Prediction(2, logits))
    assert recent.get(second) is None
    assert recent.get(first).image_id == 1
