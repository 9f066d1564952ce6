"""The statistics of a labelled folder as one PNG: four histograms drawn with PIL (no plotting library).

Panels, left to right and top to bottom: masks per image, mask size (sqrt of the area share), predicted
IoU, stability score; the title line gives the counts and the last run's throughput.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from ..formats.base import atomic_write_bytes
from .stats import Distribution, LabelStats

PANEL_W, PANEL_H = 480, 300
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 56, 16, 34, 40
TITLE_H = 36
BAR = (66, 110, 180)
AXIS = (60, 60, 60)
TEXT = (20, 20, 20)


def draw_stats(stats: LabelStats) -> Image.Image:
    """The four-panel picture of ``stats`` (``2 * PANEL_W x 2 * PANEL_H + TITLE_H`` RGB)."""
    font = ImageFont.load_default()
    picture = Image.new("RGB", (2 * PANEL_W, 2 * PANEL_H + TITLE_H), "white")
    draw = ImageDraw.Draw(picture)
    title = f"{stats.folder}: {stats.labelled} images labelled, {stats.failed} failed, {stats.masks} masks"
    if stats.runs and stats.runs[-1].get("images_per_minute"):
        run = stats.runs[-1]
        title += f"; last run {run['images_per_minute']:.1f} images/min ({run.get('runner')}, {run.get('actors')} actor(s))"
    draw.text((10, 12), title, fill=TEXT, font=font)
    panels = (
        ("masks per image", stats.masks_per_image, 0),
        ("mask size: sqrt(area / image area)", stats.mask_size, 2),
        ("predicted IoU", stats.predicted_iou, 3),
        ("stability score", stats.stability, 3),
    )
    for index, (name, dist, digits) in enumerate(panels):
        left, top = (index % 2) * PANEL_W, TITLE_H + (index // 2) * PANEL_H
        _panel(draw, font, left, top, name, dist, digits)
    return picture


def save_stats_plot(stats: LabelStats, path: Path) -> Path:
    """Write the picture of ``stats`` to ``path`` as PNG (atomically)."""
    import io

    buffer = io.BytesIO()
    draw_stats(stats).save(buffer, format="PNG")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def _panel(
    draw: ImageDraw.ImageDraw, font, left: int, top: int, name: str, dist: Distribution, digits: int
) -> None:
    x0, y0 = left + MARGIN_L, top + MARGIN_T
    x1, y1 = left + PANEL_W - MARGIN_R, top + PANEL_H - MARGIN_B
    label = name if dist.count == 0 else f"{name}  (n={dist.count}, mean {dist.mean:.{max(digits, 1)}f})"
    draw.text((x0, top + 10), label, fill=TEXT, font=font)
    draw.line([(x0, y1), (x1, y1)], fill=AXIS)
    draw.line([(x0, y0), (x0, y1)], fill=AXIS)
    counts, edges = dist.histogram.counts, dist.histogram.edges
    highest = max(counts, default=0) or 1
    width = (x1 - x0) / len(counts)
    for i, count in enumerate(counts):
        height = (y1 - y0) * count / highest
        if count:
            draw.rectangle([x0 + i * width + 1, y1 - height, x0 + (i + 1) * width - 1, y1], fill=BAR)
    draw.text((x0 - 8 - 6 * len(str(highest)), y0 - 4), str(highest), fill=TEXT, font=font)
    draw.text((x0 - 14, y1 - 6), "0", fill=TEXT, font=font)
    for i, text in tick_labels(edges, digits):
        x = x0 + i * width
        draw.line([(x, y1), (x, y1 + 4)], fill=AXIS)
        draw.text((x - 12, y1 + 8), text, fill=TEXT, font=font)


def tick_labels(edges: list[float], digits: int) -> list[tuple[int, str]]:
    """``(edge index, text)`` for the first, middle and last histogram edges, with as many decimals
    (from ``digits`` up to 4) as it takes to tell them apart; a tick that would repeat its neighbour's
    text is left out."""
    ticks = sorted({0, len(edges) // 2, len(edges) - 1})
    texts = [f"{edges[i]:.{digits}f}" for i in ticks]
    for places in range(digits + 1, 5):
        if len(set(texts)) == len(texts):
            break
        more = [f"{edges[i]:.{places}f}" for i in ticks]
        if len(set(more)) > len(set(texts)):
            texts = more
    kept = [(i, text) for k, (i, text) in enumerate(zip(ticks, texts, strict=True)) if text not in texts[:k]]
    return kept
