"""The bookkeeping files of a labelling output folder, written only by the driver.

* ``manifest.jsonl``: one line per image, ``{"name", "image_id", "source", "status": "ok"|"error",
  "masks", "height", "width", "seconds", "worker", "model", "options", "time"}`` (+ ``"error"``).
  During a run lines are appended as images finish (one ``write`` each, flushed and synced), so a killed
  run keeps every line it wrote; at the end of a run the file is rewritten, atomically, with the last
  line of each image, in ``image_id`` order.
* ``errors.jsonl``: the manifest lines of the images whose last status is ``error``, kept the same way.
* ``runs.jsonl``: one line per run (see :func:`run_line`), for throughput figures.
* ``text_scores.json``, for a run that keeps the masks best matching a phrase (``segany auto --text``):
  ``{"text": PHRASE, "images": {IMAGE_NAME: [text_score of mask 0, of mask 1, ...]}}`` (the mask formats
  have no field for them); rewritten, atomically, before each such image's manifest line.

An image is *done* when its last manifest line says ``ok`` and its masks exist (the writer's done path:
the SA-1B JSON by default). Masks written by a run killed before their manifest line are redone (and
atomically replaced); a torn last line left by a kill is dropped when the folder is next opened.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import SegAnyError
from ..formats.base import atomic_write_json, atomic_write_text, output_stem
from .pipeline import ERROR, OK, LabelJob, LabelResult

MANIFEST = "manifest.jsonl"
ERRORS = "errors.jsonl"
RUNS = "runs.jsonl"
TEXT_SCORES = "text_scores.json"
LOCK = ".segany-engine.lock"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def json_path(out_dir: Path, name: str) -> Path:
    """The SA-1B file of image ``name`` (``OUT/<name less suffix>.json``)."""
    return output_stem(out_dir, name).with_suffix(".json")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The lines of a JSON-lines file ([] when it is missing); a torn last line (no newline) is skipped."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    complete = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
    lines = []
    for number, line in enumerate(complete.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            lines.append(json.loads(line))
        except ValueError as exc:
            raise SegAnyError(f"Line {number} of {path} is not JSON ({exc}); remove or fix it.") from exc
    return lines


class LabelLog:
    """The manifest, errors and runs files of ``out_dir`` (see the module docstring); ``done_path``
    names the file whose presence says an image's masks are written (its writer's; SA-1B by default)."""

    def __init__(self, out_dir: Path, done_path: Callable[[Path, str], Path] | None = None) -> None:
        self.out_dir = Path(out_dir)
        self.manifest = self.out_dir / MANIFEST
        self.errors = self.out_dir / ERRORS
        self.runs = self.out_dir / RUNS
        self.done_path = done_path or json_path

    def entries(self) -> dict[str, dict[str, Any]]:
        """The last manifest line of each image, by name."""
        return {line["name"]: line for line in read_jsonl(self.manifest)}

    def is_done(self, entry: dict[str, Any] | None) -> bool:
        return (
            entry is not None
            and entry.get("status") == OK
            and self.done_path(self.out_dir, entry["name"]).exists()
        )

    def repair(self) -> None:
        """Cut torn last lines and remove temporary files a killed run left (call before appending)."""
        for path in (self.manifest, self.errors, self.runs):
            if path.exists():
                data = path.read_bytes()
                if data and not data.endswith(b"\n"):
                    with open(path, "r+b") as f:
                        f.truncate(data.rfind(b"\n") + 1)
        # Atomic writes (segany.files) use ".<name>.<random>.tmp" beside the target.
        for stale in self.out_dir.rglob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def record(self, result: LabelResult, job: LabelJob) -> dict[str, Any]:
        """Append the manifest line of ``result`` (and its errors line when it failed); returns the line."""
        line = {key: value for key, value in result.to_dict().items() if value is not None}
        line.update(model=job.model.to_dict(), options=job.generator.to_dict(), time=utc_now())
        _append(self.manifest, line)
        if result.status == ERROR:
            _append(self.errors, line)
        return line

    def compact(self) -> None:
        """Rewrite the manifest with one line per image (its last) and errors.jsonl to match."""
        entries = sorted(self.entries().values(), key=lambda e: (e.get("image_id", 0), e["name"]))
        atomic_write_text(self.manifest, "".join(_dumps(e) for e in entries))
        failed = [e for e in entries if e.get("status") == ERROR]
        atomic_write_text(self.errors, "".join(_dumps(e) for e in failed))  # empty when none failed

    def add_run(self, line: dict[str, Any]) -> None:
        _append(self.runs, line)

    @contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder for one run; a second run on the same folder is refused, not interleaved.

        An OS file lock, released by the kernel when the process ends, however it ends.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with open(self.out_dir / LOCK, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise SegAnyError(
                    f"Another labelling run is writing to {self.out_dir}; wait for it or choose another --out."
                ) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


class TextScores:
    """``text_scores.json`` of a folder whose masks were chosen by ``phrase`` (see the module docstring)."""

    def __init__(self, out_dir: Path, phrase: str, overwrite: bool = False) -> None:
        """Read the scores already there (a resumed run); refused when they are for another phrase.
        ``overwrite`` starts afresh."""
        self.path = Path(out_dir) / TEXT_SCORES
        self.scores: dict[str, Any] = {"text": phrase, "images": {}}
        if overwrite or not self.path.exists():
            return
        try:
            scores = json.loads(self.path.read_text(encoding="utf-8"))
            previous = scores["text"]
            dict(scores["images"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SegAnyError(
                f"{self.path} is unreadable; delete it or pass --overwrite to start over."
            ) from exc
        if previous != phrase:
            raise SegAnyError(
                f"{out_dir} holds masks chosen for --text {previous!r}; pass --overwrite or another --out."
            )
        self.scores = scores

    def add(self, name: str, scores: tuple[float, ...]) -> None:
        """Record the text scores of image ``name``'s masks and rewrite the file."""
        self.scores["images"][name] = list(scores)
        atomic_write_json(self.path, self.scores)


def run_line(
    *,
    started: str,
    seconds: float,
    first_seconds: float | None,
    runner: str,
    actors: int,
    images: int,
    skipped: int,
    results: list[LabelResult],
    job: LabelJob,
) -> dict[str, Any]:
    """The runs.jsonl line of one run: what it did and its throughput.

    ``images_per_minute``: images finished (failures included) per minute of the run's wall time, start-up
    (cluster, model loading) included; ``steady_images_per_minute``: after the first image came back
    (``first_seconds`` into the run), the rate without start-up.
    """
    labelled = sum(r.status == OK for r in results)
    steady = None
    if first_seconds is not None and len(results) > 1 and seconds > first_seconds:
        steady = round(60 * (len(results) - 1) / (seconds - first_seconds), 3)
    return {
        "started": started,
        "finished": utc_now(),
        "seconds": round(seconds, 3),
        "first_seconds": None if first_seconds is None else round(first_seconds, 3),
        "runner": runner,
        "actors": actors,
        "images": images,
        "skipped": skipped,
        "labelled": labelled,
        "failed": len(results) - labelled,
        "masks": sum(r.masks for r in results),
        "images_per_minute": round(60 * len(results) / seconds, 3) if seconds > 0 else None,
        "steady_images_per_minute": steady,
        "model": job.model.to_dict(),
        "options": job.generator.to_dict(),
    }


def _dumps(line: dict[str, Any]) -> str:
    return json.dumps(line, separators=(",", ":")) + "\n"


def _append(path: Path, line: dict[str, Any]) -> None:
    # One write of a whole line, then fsync: a kill leaves at most a torn last line, which repair() cuts.
    data = _dumps(line).encode("utf-8")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
