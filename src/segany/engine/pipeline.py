"""The work of labelling one image, shared by the local and the Ray runner.

A :class:`Labeller` holds one model and its automatic generator; ``label(item)`` reads the image, runs
the generator and writes ``OUT/<name less suffix>.json`` (SA-1B, atomically: temporary file, then
rename), and returns a :class:`LabelResult`. A run's runner only decides where labellers live (one in
this process, or one per Ray actor) and hands each result to the driver, which alone writes the
manifest, so every image gets exactly one manifest line whatever was retried.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..automatic.options import GeneratorConfig
from ..images import DEFAULT_MAX_PIXELS
from .sources import ImageItem, read_item

OK = "ok"
ERROR = "error"


@dataclass(frozen=True)
class ModelSpec:
    """The model every labeller builds: a checkpoint file (already resolved, so actors on other
    machines build the same one), its variant (None: the checkpoint's own), device and precision."""

    checkpoint: str
    variant: str | None = None
    device: str | None = None
    precision: str = "float32"

    def build(self) -> Any:
        """The :class:`~segany.modeling.Sam` this spec names, in eval mode."""
        from ..build import build_sam

        return build_sam(self.variant, checkpoint=self.checkpoint, device=self.device, dtype=self.precision)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class LabelJob:
    """Everything a labeller needs, the same for every image of a run (picklable, sent to actors)."""

    out_dir: str
    model: ModelSpec
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    max_pixels: int | None = DEFAULT_MAX_PIXELS

    def __post_init__(self) -> None:
        if self.generator.points_per_side is None:
            raise ValueError(
                "the generator's points_per_side must be a number (point grids are not supported)."
            )


@dataclass(frozen=True)
class LabelResult:
    """What became of one image: ``status`` ``ok`` (its JSON is written) or ``error`` (``error`` says why);
    ``seconds`` of work on it (read, generate, write); the size read and the number of masks written."""

    image_id: int
    name: str
    source: str
    status: str
    masks: int = 0
    height: int = 0
    width: int = 0
    seconds: float = 0.0
    error: str | None = None
    worker: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelResult:
        return cls(**data)


class Labeller:
    """One model and generator; labels images one at a time (build one per process or actor)."""

    def __init__(self, job: LabelJob) -> None:
        from ..automatic import SamAutomaticMaskGenerator
        from ..runtime import reuse_freed_memory

        reuse_freed_memory()  # a labelling process is the engine's own (see runtime.reuse_freed_memory)
        from ..formats import get_writer

        self.job = job
        # RLEs whatever the configured output mode: the SA-1B writer takes any form, RLE is the smallest.
        config = dataclasses.replace(job.generator, output_mode="coco_rle")
        self.generator = SamAutomaticMaskGenerator.from_config(job.model.build(), config)
        self.writer = get_writer("sa1b")
        self.worker = f"{socket.gethostname()}:{os.getpid()}"

    def label(self, item: ImageItem) -> LabelResult:
        """Label ``item``; any failure on it becomes an ``error`` result (the run goes on)."""
        start = time.perf_counter()
        try:
            image = read_item(item, self.job.max_pixels)
            records = self.generator.generate(image)
            height, width = image.shape[:2]
            self.writer.write(Path(self.job.out_dir), item.name, item.image_id, height, width, records)
        except Exception as exc:
            # Recorded in the manifest and errors.jsonl and counted in the exit status, not hidden.
            message = str(exc).strip() or type(exc).__name__
            return self._result(item, ERROR, start, error=f"{type(exc).__name__}: {message}")
        return self._result(item, OK, start, masks=len(records), height=height, width=width)

    def _result(self, item: ImageItem, status: str, start: float, **values: Any) -> LabelResult:
        seconds = round(time.perf_counter() - start, 4)
        return LabelResult(
            item.image_id, item.name, item.source, status, seconds=seconds, worker=self.worker, **values
        )
