"""Options of a round (:func:`segany.engine.rounds.run_round`): how it splits, measures and decides.

Kept apart from the round itself so that the CLI builds its flags from them without importing the
training code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..training.eval_config import EvalConfig

# What a round can require to improve: box mIoU, mIoU after the first click, or after the last click.
METRICS = ("box_miou", "click1_miou", "last_click_miou")


@dataclass(frozen=True)
class RoundOptions:
    """How a round splits, measures and decides (training settings are a separate TOML)."""

    holdout: float = 0.2
    metric: str = "box_miou"
    min_gain: float = 0.0
    evaluation: EvalConfig = field(default_factory=lambda: EvalConfig(baselines=False, clicks=3))

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {', '.join(METRICS)}, got {self.metric!r}.")
        if not 0.0 < self.holdout < 1.0:
            raise ValueError(f"holdout must lie in (0, 1), got {self.holdout}.")


def metric_of(summary: dict[str, Any], metric: str) -> float:
    """The figure ``metric`` names in an evaluation summary (``EvalResult.to_dict()``, as in the ledger)."""
    sam = summary["sam"]
    if metric == "box_miou":
        return float(sam["box_miou"])
    return float(sam["click_miou"][0 if metric == "click1_miou" else -1])
