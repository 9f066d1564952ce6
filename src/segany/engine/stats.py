"""Statistics of a labelled folder: images, masks per image, mask sizes, predicted IoU, stability, throughput.

Read from the folder alone: the manifest's last line per image (status), each labelled image's SA-1B
JSON (its masks' ``area``, ``predicted_iou`` and ``stability_score``) and ``runs.jsonl`` (throughput).
Mask size is given as in the SA-1B paper (fig. 5), as the square root of the mask's share of the image
area, in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import SegAnyError
from ..formats.sa1b import read_sa1b
from .outputs import MANIFEST, LabelLog, json_path, read_jsonl
from .pipeline import ERROR

BINS = 10


@dataclass(frozen=True)
class Histogram:
    """``counts[i]`` values fell in ``[edges[i], edges[i + 1])`` (the last bin includes its right edge)."""

    counts: tuple[int, ...]
    edges: tuple[float, ...]

    @classmethod
    def of(cls, values: np.ndarray, low: float, high: float, bins: int = BINS) -> Histogram:
        if high <= low:
            high = low + 1.0
        counts, edges = np.histogram(values, bins=bins, range=(low, high))
        return cls(tuple(int(c) for c in counts), tuple(float(e) for e in edges))


@dataclass(frozen=True)
class Distribution:
    """Summary figures and a histogram of one quantity (``count`` values)."""

    count: int
    mean: float | None
    quantiles: dict[str, float]  # min, p10, p50, p90, max
    histogram: Histogram

    @classmethod
    def of(cls, values: np.ndarray, low: float | None = None, high: float | None = None) -> Distribution:
        values = np.asarray(values, dtype=np.float64)
        if len(values) == 0:
            return cls(0, None, {}, Histogram.of(values, low or 0.0, high or 1.0))
        points = {"min": 0, "p10": 10, "p50": 50, "p90": 90, "max": 100}
        quantiles = {key: float(np.percentile(values, q)) for key, q in points.items()}
        low = quantiles["min"] if low is None else low
        high = quantiles["max"] if high is None else high
        return cls(len(values), float(values.mean()), quantiles, Histogram.of(values, low, high))

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean,
            **self.quantiles,
            "histogram": {"counts": list(self.histogram.counts), "edges": list(self.histogram.edges)},
        }


@dataclass(frozen=True)
class LabelStats:
    """Statistics of one labelled folder (see the module docstring)."""

    folder: str
    images: int
    labelled: int
    failed: int
    masks: int
    masks_per_image: Distribution
    mask_size: Distribution  # sqrt(area / image area)
    predicted_iou: Distribution
    stability: Distribution
    runs: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": self.folder,
            "images": self.images,
            "labelled": self.labelled,
            "failed": self.failed,
            "masks": self.masks,
            "masks_per_image": self.masks_per_image.to_dict(),
            "mask_size": self.mask_size.to_dict(),
            "predicted_iou": self.predicted_iou.to_dict(),
            "stability": self.stability.to_dict(),
            "runs": [_run_summary(run) for run in self.runs],
        }

    def text(self) -> str:
        """A plain-text report: counts, each distribution with a bar histogram, and each run's throughput."""
        lines = [
            f"{self.folder}: {self.images} images, {self.labelled} labelled, {self.failed} failed, "
            f"{self.masks} masks",
        ]
        for title, dist, digits in (
            ("masks per image", self.masks_per_image, 1),
            ("mask size, sqrt(area / image area)", self.mask_size, 3),
            ("predicted IoU", self.predicted_iou, 3),
            ("stability score", self.stability, 3),
        ):
            lines.append("")
            lines.extend(_distribution_lines(title, dist, digits))
        if self.runs:
            lines.append("")
            lines.append("runs (images/min: wall time incl. start-up; steady: after the first image)")
            for run in self.runs:
                s = _run_summary(run)
                steady = s["steady_images_per_minute"]
                lines.append(
                    f"  {s['started']}  {s['runner']:<5} actors={s['actors']}  {s['done']} images in "
                    f"{s['seconds']:.1f} s: {_figure(s['images_per_minute'])} images/min"
                    + (f" (steady {_figure(steady)})" if steady is not None else "")
                )
        return "\n".join(lines)


def collect_stats(folder: Path) -> LabelStats:
    """Read the statistics of ``folder``, an output folder of ``segany engine label``."""
    folder = Path(folder)
    log = LabelLog(folder)
    if not log.manifest.exists():
        raise SegAnyError(f"{folder} has no {MANIFEST}; give an output folder of `segany engine label`.")
    entries = log.entries()
    per_image, sizes, ious, stabilities = [], [], [], []
    labelled = 0
    for entry in entries.values():
        if not log.is_done(entry):
            continue
        path = json_path(folder, entry["name"])
        try:
            info, annotations = read_sa1b(path)
            image_area = float(info["width"]) * float(info["height"])
            sizes.extend(math.sqrt(float(a["area"]) / image_area) for a in annotations)
            ious.extend(float(a["predicted_iou"]) for a in annotations)
            stabilities.extend(float(a["stability_score"]) for a in annotations)
        except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError) as exc:
            raise SegAnyError(
                f"Cannot read {path} as SA-1B ({type(exc).__name__}: {exc}); relabel it."
            ) from exc
        labelled += 1
        per_image.append(len(annotations))
    return LabelStats(
        folder=str(folder),
        images=len(entries),
        labelled=labelled,
        failed=sum(e.get("status") == ERROR for e in entries.values()),
        masks=int(sum(per_image)),
        masks_per_image=Distribution.of(np.array(per_image)),
        mask_size=Distribution.of(np.array(sizes), low=0.0, high=1.0),
        predicted_iou=Distribution.of(np.array(ious)),
        stability=Distribution.of(np.array(stabilities)),
        runs=read_jsonl(log.runs),
    )


def _run_summary(run: dict[str, Any]) -> dict[str, Any]:
    keys = ("started", "runner", "actors", "seconds", "images_per_minute", "steady_images_per_minute")
    summary = {key: run.get(key) for key in keys}
    summary["done"] = int(run.get("labelled", 0)) + int(run.get("failed", 0))
    summary["completed"] = run.get("completed", True)
    return summary


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _distribution_lines(title: str, dist: Distribution, digits: int) -> list[str]:
    if dist.count == 0:
        return [f"{title}: none"]
    q = dist.quantiles
    lines = [
        f"{title}: mean {dist.mean:.{digits}f}, min {q['min']:.{digits}f}, p10 {q['p10']:.{digits}f}, "
        f"median {q['p50']:.{digits}f}, p90 {q['p90']:.{digits}f}, max {q['max']:.{digits}f}"
    ]
    counts, edges = dist.histogram.counts, dist.histogram.edges
    widest = max(counts) or 1
    for i, count in enumerate(counts):
        bar = "#" * round(40 * count / widest)
        lines.append(
            f"  [{edges[i]:7.3f}, {edges[i + 1]:7.3f}{']' if i == len(counts) - 1 else ')'} {count:7d} {bar}"
        )
    return lines
