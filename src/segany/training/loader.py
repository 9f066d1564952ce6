"""Which images each process trains on at each step: a pure function of (seed, step), so resuming a run
draws exactly the batches the uninterrupted run would have drawn.

Images are numbered by a global counter ``c = ((step * grad_accum + micro) * world + rank) * batch + b``;
item ``c`` of a finite dataset is read through a fresh random permutation per epoch (endless ones, such as
mixtures and copy-paste, are random per index already and are read in order). An image left with
no usable mask (all filtered out) is replaced by a random other one.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .distributed import ProcessInfo
from .samples import MaskFilter, TrainBatch, TrainSample, collate, prepare_sample
from .synthetic import Scene

_REDRAWS = 20
# Datasets this long are samplers (random per index), not lists worth shuffling.
_ENDLESS = 1 << 24


class StepBatches:
    """``batches.get(step, micro)`` -> this process's :class:`TrainBatch` for that micro-batch."""

    def __init__(
        self,
        dataset: Sequence[Scene],
        seed: int,
        batch_size: int,
        grad_accum: int,
        info: ProcessInfo,
        img_size: int,
        low_res: int,
        mask_filter: MaskFilter,
        crop_size: int | None = None,
        coverage: bool = False,
    ) -> None:
        """``crop_size``: also crop each mask for a text-image encoder; ``coverage``: also keep each
        low-res cell's covered share (both: see :func:`prepare_sample`)."""
        if len(dataset) == 0:
            raise ValueError("The training data is empty.")
        self.dataset = dataset
        self.seed = seed
        self.batch_size = batch_size
        self.grad_accum = grad_accum
        self.info = info
        self.img_size = img_size
        self.low_res = low_res
        self.mask_filter = mask_filter
        self.crop_size = crop_size
        self.coverage = coverage
        self._epoch: tuple[int, np.ndarray] | None = None

    def get(self, step: int, micro: int) -> TrainBatch:
        first = ((step * self.grad_accum + micro) * self.info.world + self.info.rank) * self.batch_size
        samples = [self._sample(first + b) for b in range(self.batch_size)]
        return collate(samples, self.img_size, self.low_res)

    def _index(self, counter: int) -> int:
        size = len(self.dataset)
        if size >= _ENDLESS:
            return counter % size
        epoch = counter // size
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = (epoch, np.random.default_rng([self.seed, epoch]).permutation(size))
        return int(self._epoch[1][counter % size])

    def _sample(self, counter: int) -> TrainSample:
        index = self._index(counter)
        for attempt in range(_REDRAWS):
            rng = np.random.default_rng([self.seed, counter, attempt])
            sample = prepare_sample(
                self.dataset[index],
                self.img_size,
                self.low_res,
                self.mask_filter,
                rng,
                self.crop_size,
                self.coverage,
            )
            if len(sample.targets):
                return sample
            index = int(rng.integers(len(self.dataset)))
        raise ValueError(
            f"{_REDRAWS} images in a row had no mask left after filtering; check the data and "
            "max_mask_area / masks_per_image."
        )
