"""The annotation database: SQLite in WAL mode, one connection per call, every write one transaction.

Tables:

* ``images``: ``id``, ``path`` (relative to the images folder, POSIX separators), ``width``, ``height``
  (pixels, after EXIF orientation), ``added`` (UTC ISO 8601).
* ``annotations``: ``id``, ``image_id``, ``mask`` (compressed COCO RLE as JSON text, ``{"size": [H, W],
  "counts": str}``), ``area`` (pixels), ``bbox`` (JSON ``[x, y, w, h]`` pixels), ``label``, ``prompts`` (any
  JSON the annotator's client sent), ``source`` (``manual`` | ``prefill`` | ``import``), ``status``
  (``accepted`` | ``proposed`` | ``rejected``), ``annotator``, ``seconds`` (time spent on it),
  ``created``, ``updated``.
* ``sessions``: ``id``, ``annotator``, ``started``, ``last_seen``: one row per stretch of work; a save
  more than :data:`SESSION_GAP_S` after the annotator's last one starts a new session.

Why one connection per call: ``sqlite3`` connections must not be shared between threads, and the
server answers requests on a thread pool. Writes start with ``BEGIN IMMEDIATE`` so that two writers
queue on the busy timeout instead of one failing when it upgrades a read lock; a process killed
mid-write leaves each annotation either fully stored or absent (SQLite's journal rolls back the rest).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..errors import SegAnyError

SCHEMA_VERSION = 1
SOURCES = ("manual", "prefill", "import")
STATUSES = ("accepted", "proposed", "rejected")
SESSION_GAP_S = 30 * 60
BUSY_TIMEOUT_MS = 30_000

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL CHECK (width > 0),
    height INTEGER NOT NULL CHECK (height > 0),
    added TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    mask TEXT NOT NULL,
    area INTEGER NOT NULL CHECK (area > 0),
    bbox TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    prompts TEXT NOT NULL DEFAULT 'null',
    source TEXT NOT NULL CHECK (source IN {SOURCES}),
    status TEXT NOT NULL CHECK (status IN {STATUSES}),
    annotator TEXT NOT NULL DEFAULT '',
    seconds REAL NOT NULL DEFAULT 0 CHECK (seconds >= 0),
    created TEXT NOT NULL,
    updated TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_image ON annotations(image_id, status);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    annotator TEXT NOT NULL,
    started TEXT NOT NULL,
    last_seen TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_annotator ON sessions(annotator, last_seen);
"""


class StorageError(SegAnyError):
    """The annotation database cannot be opened or is not one segany can use."""


@dataclass(frozen=True)
class ImageRow:
    """One registered image; ``path`` is relative to the images folder."""

    id: int
    path: str
    width: int
    height: int
    added: str


@dataclass(frozen=True)
class ImageSummary:
    """An image with its number of accepted and proposed annotations."""

    image: ImageRow
    accepted: int
    proposed: int


@dataclass(frozen=True)
class NewAnnotation:
    """An annotation to store. ``mask`` is a compressed COCO RLE of the image's size, already checked;
    ``area`` and ``bbox`` (``[x, y, w, h]`` pixels) are derived from it (see :mod:`segany.app.mask_checks`)."""

    mask: dict[str, Any]
    area: int
    bbox: list[int]
    label: str = ""
    prompts: Any = None
    source: str = "manual"
    status: str = "accepted"
    annotator: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class AnnotationRow:
    """A stored annotation; ``mask`` is a compressed COCO RLE ``{"size": [H, W], "counts": str}``."""

    id: int
    image_id: int
    mask: dict[str, Any]
    area: int
    bbox: list[int]
    label: str
    prompts: Any
    source: str
    status: str
    annotator: str
    seconds: float
    created: str
    updated: str


def utc_now() -> str:
    """The current time as UTC ISO 8601 with milliseconds (sorts as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class Storage:
    """The annotation database at ``path`` (created with its tables when missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            raise StorageError(
                f"Database path {self.path} is a folder; give a file such as annotations.sqlite."
            )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Cannot create the folder of the database {self.path} ({exc.strerror or exc}); "
                "give another path."
            ) from exc
        try:
            with self._connect() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise StorageError(
                        f"{self.path} was made by a newer segany (schema {version}); upgrade segany to open it."
                    )
                # WAL lets readers work while one writer writes; the setting is stored in the file.
                conn.execute("PRAGMA journal_mode=WAL")
                # One transaction, so two processes opening a new file at once create the tables once.
                conn.executescript(
                    f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; COMMIT;"
                )
        except sqlite3.DatabaseError as exc:
            raise StorageError(
                f"Cannot use {self.path} as the annotation database ({exc}); give a new file name."
            ) from exc

    # --- connections -------------------------------------------------------------------------------

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # isolation_level=None: no implicit transactions; writes say BEGIN IMMEDIATE themselves.
        conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            # FULL: a committed annotation survives a power cut too, not only a killed process.
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (each statement sees the last committed state)."""
        with self._connect() as conn:
            yield conn

    @contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """A connection inside one write transaction: committed on success, rolled back on any error."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # --- images ------------------------------------------------------------------------------------

    def add_images(self, entries: Iterable[tuple[str, int, int]]) -> int:
        """Register ``(path, width, height)`` images not registered yet; returns how many were new."""
        now = utc_now()
        with self.writing() as conn:
            before = conn.total_changes
            conn.executemany(
                "INSERT OR IGNORE INTO images (path, width, height, added) VALUES (?, ?, ?, ?)",
                [(path, int(width), int(height), now) for path, width, height in entries],
            )
            return conn.total_changes - before

    def image(self, image_id: int) -> ImageRow | None:
        if not _storable(image_id):
            return None
        with self.reading() as conn:
            row = conn.execute("SELECT * FROM images WHERE id = ?", (image_id,)).fetchone()
        return _image(row) if row else None

    def image_by_path(self, path: str) -> ImageRow | None:
        with self.reading() as conn:
            row = conn.execute("SELECT * FROM images WHERE path = ?", (path,)).fetchone()
        return _image(row) if row else None

    def image_paths(self) -> set[str]:
        with self.reading() as conn:
            return {row[0] for row in conn.execute("SELECT path FROM images")}

    def image_summaries(self) -> list[ImageSummary]:
        """Every image, ordered by path, with its accepted and proposed annotation counts."""
        with self.reading() as conn:
            rows = conn.execute(
                """
                SELECT images.*,
                       COALESCE(SUM(annotations.status = 'accepted'), 0) AS accepted,
                       COALESCE(SUM(annotations.status = 'proposed'), 0) AS proposed
                FROM images LEFT JOIN annotations ON annotations.image_id = images.id
                GROUP BY images.id ORDER BY images.path
                """
            ).fetchall()
        return [ImageSummary(_image(row), int(row["accepted"]), int(row["proposed"])) for row in rows]

    # --- annotations -------------------------------------------------------------------------------

    def add_annotations(
        self, image_id: int, annotations: Iterable[NewAnnotation], replace_proposed_from: str | None = None
    ) -> list[int]:
        """Store annotations of one image in one transaction; returns their ids in order.

        ``replace_proposed_from``: first delete the image's ``proposed`` annotations of this source (a
        new pre-fill replaces the last one's unreviewed proposals). Annotators' sessions are updated.
        """
        now = utc_now()
        with self.writing() as conn:
            if replace_proposed_from is not None:
                conn.execute(
                    "DELETE FROM annotations WHERE image_id = ? AND status = 'proposed' AND source = ?",
                    (image_id, replace_proposed_from),
                )
            return _insert_annotations(conn, image_id, list(annotations), now)

    def import_annotations(self, images: Iterable[tuple[str, int, int, Sequence[NewAnnotation]]]) -> int:
        """Register images ``(path, width, height, annotations)`` that are new and store their annotations,
        all in one transaction (nothing is stored if any part fails); returns the annotations stored."""
        now = utc_now()
        stored = 0
        with self.writing() as conn:
            for path, width, height, annotations in images:
                conn.execute(
                    "INSERT OR IGNORE INTO images (path, width, height, added) VALUES (?, ?, ?, ?)",
                    (path, int(width), int(height), now),
                )
                (image_id,) = conn.execute("SELECT id FROM images WHERE path = ?", (path,)).fetchone()
                stored += len(_insert_annotations(conn, int(image_id), list(annotations), now))
        return stored

    def annotation(self, annotation_id: int) -> AnnotationRow | None:
        if not _storable(annotation_id):
            return None
        with self.reading() as conn:
            row = conn.execute("SELECT * FROM annotations WHERE id = ?", (annotation_id,)).fetchone()
        return _annotation(row) if row else None

    def annotations(self, image_id: int, statuses: Iterable[str] = STATUSES) -> list[AnnotationRow]:
        """The image's annotations with one of ``statuses``, oldest first."""
        statuses = tuple(statuses)
        if not _storable(image_id):
            return []
        marks = ", ".join("?" * len(statuses))
        with self.reading() as conn:
            rows = conn.execute(
                f"SELECT * FROM annotations WHERE image_id = ? AND status IN ({marks}) ORDER BY id",
                (image_id, *statuses),
            ).fetchall()
        return [_annotation(row) for row in rows]

    def update_annotation(self, annotation_id: int, **changes: Any) -> AnnotationRow | None:
        """Change ``label``, ``status`` and/or ``mask`` (with its ``area`` and ``bbox``); None if unknown."""
        allowed = {"label", "status", "mask", "area", "bbox"}
        unknown = set(changes) - allowed
        if unknown:
            raise ValueError(f"cannot change {', '.join(sorted(unknown))}; change one of {sorted(allowed)}.")
        if not _storable(annotation_id):
            return None
        values = {key: json.dumps(v) if key in ("mask", "bbox") else v for key, v in changes.items()}
        values["updated"] = utc_now()
        assignments = ", ".join(f"{key} = ?" for key in values)
        with self.writing() as conn:
            cursor = conn.execute(
                f"UPDATE annotations SET {assignments} WHERE id = ?", (*values.values(), annotation_id)
            )
            if cursor.rowcount == 0:
                return None
            row = conn.execute("SELECT * FROM annotations WHERE id = ?", (annotation_id,)).fetchone()
        return _annotation(row)

    def delete_annotation(self, annotation_id: int) -> bool:
        """Delete one annotation; False if there was none with this id."""
        if not _storable(annotation_id):
            return False
        with self.writing() as conn:
            return conn.execute("DELETE FROM annotations WHERE id = ?", (annotation_id,)).rowcount > 0

    def labels(self) -> list[str]:
        """Labels of non-rejected annotations, most used first (ties alphabetically)."""
        with self.reading() as conn:
            rows = conn.execute(
                """
                SELECT label, COUNT(*) AS n FROM annotations
                WHERE label != '' AND status != 'rejected'
                GROUP BY label ORDER BY n DESC, label
                """
            ).fetchall()
        return [row["label"] for row in rows]

    def accepted(self) -> Iterator[tuple[ImageRow, list[AnnotationRow]]]:
        """Each image with at least one accepted annotation, by path, with those annotations."""
        with self.reading() as conn:
            rows = conn.execute(
                """
                SELECT * FROM images WHERE id IN (SELECT image_id FROM annotations WHERE status = 'accepted')
                ORDER BY path
                """
            ).fetchall()
        for row in rows:
            image = _image(row)
            yield image, self.annotations(image.id, ("accepted",))

    def sessions(self) -> list[dict[str, Any]]:
        """Every annotator session as ``{"id", "annotator", "started", "last_seen"}``, oldest first."""
        with self.reading() as conn:
            return [dict(row) for row in conn.execute("SELECT * FROM sessions ORDER BY id")]


def _insert_annotations(
    conn: sqlite3.Connection, image_id: int, annotations: list[NewAnnotation], now: str
) -> list[int]:
    """Insert one image's annotations within the caller's transaction; returns their ids in order.
    Annotators' sessions are updated."""
    ids = [
        conn.execute(
            """
            INSERT INTO annotations (image_id, mask, area, bbox, label, prompts, source, status,
                                     annotator, seconds, created, updated)
            VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
            """,
            (
                image_id,
                json.dumps(a.mask, separators=(",", ":")),
                int(a.area),
                json.dumps([int(v) for v in a.bbox]),
                a.label,
                json.dumps(a.prompts, separators=(",", ":")),
                a.source,
                a.status,
                a.annotator,
                float(a.seconds),
                now,
                now,
            ),
        ).lastrowid
        for a in annotations
    ]
    for annotator in sorted({a.annotator for a in annotations if a.annotator}):
        _touch_session(conn, annotator, now)
    return [int(i) for i in ids]


def _touch_session(conn: sqlite3.Connection, annotator: str, now: str) -> None:
    row = conn.execute(
        "SELECT id, last_seen FROM sessions WHERE annotator = ? ORDER BY last_seen DESC LIMIT 1", (annotator,)
    ).fetchone()
    recent = row is not None and datetime.fromisoformat(now) - datetime.fromisoformat(
        row["last_seen"]
    ) <= timedelta(seconds=SESSION_GAP_S)
    if recent:
        conn.execute("UPDATE sessions SET last_seen = ? WHERE id = ?", (now, row["id"]))
    else:
        conn.execute(
            "INSERT INTO sessions (annotator, started, last_seen) VALUES (?, ?, ?)", (annotator, now, now)
        )


def _storable(row_id: int) -> bool:
    """Whether ``row_id`` fits SQLite's 64-bit INTEGER (a larger id names no row; sqlite3 would raise)."""
    return -(2**63) <= row_id < 2**63


def _image(row: sqlite3.Row) -> ImageRow:
    return ImageRow(int(row["id"]), row["path"], int(row["width"]), int(row["height"]), row["added"])


def _annotation(row: sqlite3.Row) -> AnnotationRow:
    return AnnotationRow(
        id=int(row["id"]),
        image_id=int(row["image_id"]),
        mask=json.loads(row["mask"]),
        area=int(row["area"]),
        bbox=json.loads(row["bbox"]),
        label=row["label"],
        prompts=json.loads(row["prompts"]),
        source=row["source"],
        status=row["status"],
        annotator=row["annotator"],
        seconds=float(row["seconds"]),
        created=row["created"],
        updated=row["updated"],
    )
