"""The held-out split of a round: by image name, deterministic, the same in every source and every round.

An image is held out when the SHA-256 of its name (its path relative to its folder), read as a number in
[0, 1), is below the held-out fraction. The test depends on the name alone, so an image never moves
from one side to the other as annotations accumulate, and the same image seen by two sources (annotated
by hand and labelled automatically) is on the same side in both: nothing held out is ever trained on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

from ..errors import DatasetError
from ..training.datasets import SceneDataset, Subset
from ..training.synthetic import Scene


def position(name: str) -> float:
    """Where ``name`` falls in [0, 1): the first 8 bytes of its SHA-256 as a fraction."""
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def held_out_names(names: Iterable[str], fraction: float, must_cover: Iterable[str] = ()) -> set[str]:
    """The names held out at ``fraction`` (in [0, 1)).

    ``must_cover``: names of which at least one must be held out (the images evaluated on); when the hash
    holds out none of them, the one with the lowest position is, so a small set still has a test image.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the held-out fraction must lie in [0, 1), got {fraction}.")
    held = {name for name in names if position(name) < fraction}
    cover = set(must_cover)
    if cover and not held & cover:
        held.add(min(cover, key=position))
    return held


def split(dataset: SceneDataset, held: set[str]) -> tuple[Subset, Subset]:
    """``(train, held out)`` views of ``dataset``, by each item's name."""
    names = [dataset.name(i) for i in range(len(dataset))]
    train = [i for i, name in enumerate(names) if name not in held]
    test = [i for i, name in enumerate(names) if name in held]
    return Subset(dataset, train), Subset(dataset, test)


class Joined(SceneDataset):
    """Several datasets one after another (item names are prefixed with the dataset's position)."""

    def __init__(self, datasets: Sequence[SceneDataset]) -> None:
        self.datasets = [d for d in datasets if len(d)]
        if not self.datasets:
            raise DatasetError("There are no images to join; give at least one non-empty dataset.")
        self._starts = [0]
        for dataset in self.datasets:
            self._starts.append(self._starts[-1] + len(dataset))

    def __len__(self) -> int:
        return self._starts[-1]

    def _locate(self, index: int) -> tuple[int, int]:
        k = max(i for i, start in enumerate(self._starts[:-1]) if start <= index)
        return k, index - self._starts[k]

    def name(self, index: int) -> str:
        k, j = self._locate(self._position(index))
        return f"{k}:{self.datasets[k].name(j)}"

    def _load(self, index: int) -> Scene:
        k, j = self._locate(index)
        return self.datasets[k][j]
