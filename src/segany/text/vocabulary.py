"""The words of segany's synthetic text scenes (shapes named by size, colour and kind) and what they mean.

Shared by the small text-image encoder (:mod:`segany.text.tiny_encoder`, whose vocabulary they are) and the
scenes that train and measure it (:mod:`segany.training.text_scenes`).
"""

from __future__ import annotations

# Named colours far apart in RGB, each jittered a little per object.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 45),
    "green": (45, 175, 65),
    "blue": (50, 90, 230),
    "yellow": (230, 210, 50),
    "white": (238, 238, 238),
}
KINDS: tuple[str, ...] = ("ellipse", "rectangle", "triangle")
# Longest extent of a shape, as a fraction of the shorter image side; the two ranges are far apart.
SIZES: dict[str, tuple[float, float]] = {"small": (0.14, 0.22), "large": (0.34, 0.50)}
# The ways an object is named, shortest first: each a tuple of the label's attributes, in phrase order.
PHRASE_FORMS: tuple[tuple[str, ...], ...] = (
    ("kind",),
    ("colour", "kind"),
    ("size", "kind"),
    ("size", "colour", "kind"),
)
VOCABULARY: tuple[str, ...] = (*SIZES, *COLOURS, *KINDS)
