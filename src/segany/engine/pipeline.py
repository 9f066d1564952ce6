"""The work of labelling one image, shared by the local and the Ray runner.

A :class:`Labeller` holds one model and its automatic generator; ``label(item)`` reads the image, runs
the generator, keeps the masks that best match a phrase when the job has one (:class:`TextChoice`),
writes its overlay when asked, then its masks in the job's format (SA-1B by default,
``OUT/<name less suffix>.json``; every writer writes atomically: temporary file, then rename), and
returns a :class:`LabelResult`. A run's runner only decides where labellers live (one in
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
from ..formats.base import output_stem
from ..images import DEFAULT_MAX_PIXELS
from .sources import ImageItem, read_item

OK = "ok"
ERROR = "error"
# The folder of overlays inside an output folder.
OVERLAYS = "overlays"


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
class TextChoice:
    """Keep only the ``top_k`` masks that best match ``phrase``, ranked by the text-image encoder stored
    at ``encoder`` (CLIP weights of open_clip architecture ``clip_model``, or a segany text encoder);
    see :func:`segany.text.rank_by_text`."""

    phrase: str
    encoder: str
    clip_model: str
    top_k: int = 1


@dataclass(frozen=True)
class LabelJob:
    """Everything a labeller needs, the same for every image of a run (picklable, sent to actors).

    ``format``: the mask writer (``sa1b``, ``coco``, ``png``, ``yolo``; :func:`segany.formats.get_writer`);
    ``overlay``: also write ``OUT/overlays/<name less suffix>.png`` with all masks drawn.
    """

    out_dir: str
    model: ModelSpec
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    max_pixels: int | None = DEFAULT_MAX_PIXELS
    format: str = "sa1b"
    overlay: bool = False
    text: TextChoice | None = None

    def __post_init__(self) -> None:
        if self.generator.points_per_side is None:
            raise ValueError(
                "the generator's points_per_side must be a number (point grids are not supported)."
            )

    def writer(self) -> Any:
        """The :class:`~segany.formats.base.MaskWriter` of ``format``."""
        from ..formats import get_writer

        return get_writer(self.format)


@dataclass(frozen=True)
class LabelResult:
    """What became of one image: ``status`` ``ok`` (its masks are written) or ``error`` (``error`` says
    why); ``seconds`` of work on it (read, generate, write); the size read, the number of masks written
    and, for a job with a phrase, their text scores (best first)."""

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
    text_scores: tuple[float, ...] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelResult:
        scores = data.get("text_scores")
        return cls(**{**data, "text_scores": None if scores is None else tuple(scores)})


class Labeller:
    """One model and generator; labels images one at a time (build one per process or actor)."""

    def __init__(self, job: LabelJob) -> None:
        from ..automatic import SamAutomaticMaskGenerator
        from ..runtime import reuse_freed_memory

        reuse_freed_memory()  # a labelling process is the engine's own (see runtime.reuse_freed_memory)
        self.job = job
        # RLEs whatever the configured output mode: every writer takes any form, RLE is the smallest.
        config = dataclasses.replace(job.generator, output_mode="coco_rle")
        self.generator = SamAutomaticMaskGenerator.from_config(job.model.build(), config)
        self.writer = job.writer()
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.text_encoder: Any = None  # loaded for a job with a phrase
        if job.text is not None:
            from ..text.load import load_text_encoder

            self.text_encoder = load_text_encoder(
                job.text.encoder, clip_model=job.text.clip_model, device=self.generator.predictor.device
            )

    def label(self, item: ImageItem) -> LabelResult:
        """Label ``item``; any failure on it becomes an ``error`` result (the run goes on)."""
        start = time.perf_counter()
        try:
            image = read_item(item, self.job.max_pixels)
            records = self.generator.generate(image)
            scores = None
            if self.job.text is not None:
                from ..text.rerank import rank_by_text

                records = rank_by_text(image, records, self.job.text.phrase, self.text_encoder)
                records = records[: self.job.text.top_k]
                scores = tuple(round(float(r["text_score"]), 6) for r in records)
            height, width = image.shape[:2]
            out_dir = Path(self.job.out_dir)
            if self.job.overlay:
                _write_overlay(output_stem(out_dir / OVERLAYS, item.name).with_suffix(".png"), image, records)
            # The masks last: the writer's done path is what says the image is written.
            self.writer.write(out_dir, item.name, item.image_id, height, width, records)
        except Exception as exc:
            # Recorded in the manifest and errors.jsonl and counted in the exit status, not hidden.
            message = str(exc).strip() or type(exc).__name__
            return self._result(item, ERROR, start, error=f"{type(exc).__name__}: {message}")
        return self._result(
            item, OK, start, masks=len(records), height=height, width=width, text_scores=scores
        )

    def _result(self, item: ImageItem, status: str, start: float, **values: Any) -> LabelResult:
        seconds = round(time.perf_counter() - start, 4)
        return LabelResult(
            item.image_id, item.name, item.source, status, seconds=seconds, worker=self.worker, **values
        )


def _write_overlay(path: Path, image: Any, records: list[dict[str, Any]]) -> None:
    """``image`` with every mask of ``records`` (COCO RLEs) drawn, as a PNG at ``path`` (atomically)."""
    from PIL import Image

    from ..files import atomic_write
    from ..formats import rle
    from ..visualize import draw_masks

    picture = draw_masks(image, [rle.decode(r["segmentation"]) for r in records])
    atomic_write(path, lambda tmp: Image.fromarray(picture).save(tmp, format="PNG"))
