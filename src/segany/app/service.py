"""What the server's routes do, without HTTP: images by id, embeddings, predictions, annotations, pre-fill,
exports. Errors are :class:`ServiceError` subclasses carrying the HTTP status the server answers with.

The model is built by ``model_factory`` on first use (so a server starts at once, and tests can pass any
model); all state lives in one :class:`AnnotationService` per app.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ..errors import SegAnyError
from ..formats import rle as rle_utils
from ..images import load_image
from ..modeling import Sam
from ..prompts import check_inside, is_ambiguous
from ..store import catalog
from ..store.storage import AnnotationRow, ImageRow, NewAnnotation, Storage
from .embeddings import (
    BackgroundQueue,
    Embedding,
    EmbeddingCache,
    Prediction,
    RecentPredictions,
    predictor_for,
)
from .mask_checks import bbox_xywh, checked_rle
from .transfer import export_annotations

DEFAULT_PREFILL_POINTS_PER_SIDE = 16


class ServiceError(SegAnyError):
    """A request the service cannot carry out; ``status`` is the HTTP status to answer with."""

    status: ClassVar[int] = 422


class NotFound(ServiceError):
    status = 404


class Forbidden(ServiceError):
    status = 403


class Conflict(ServiceError):
    status = 409


class AnnotationService:
    """The images folder, the database, the model (built on first use), its caches and the background queue."""

    def __init__(
        self, images_dir: Path, storage: Storage, model_factory: Callable[[], Sam], cache_dir: Path
    ) -> None:
        self.images_dir = Path(images_dir)
        self.storage = storage
        self.cache_dir = Path(cache_dir)
        self._model_factory = model_factory
        self._cache: EmbeddingCache | None = None
        self._lock = threading.Lock()
        self.predictions = RecentPredictions()
        self.queue = BackgroundQueue(self.run_job)

    @property
    def cache(self) -> EmbeddingCache:
        """The embedding cache of the model; the first call builds the model."""
        with self._lock:
            if self._cache is None:
                self._cache = EmbeddingCache(self.cache_dir, self._model_factory())
            return self._cache

    @property
    def model(self) -> Sam:
        return self.cache.model

    def rescan(self) -> int:
        """Register images added to the folder since; returns how many."""
        return self.storage.add_images(catalog.scan(self.images_dir, self.storage.image_paths()))

    # --- images ------------------------------------------------------------------------------------

    def image(self, image_id: int) -> ImageRow:
        image = self.storage.image(image_id)
        if image is None:
            raise NotFound(f"No image with id {image_id}; list them with GET /api/images.")
        return image

    def image_file(self, image: ImageRow) -> Path:
        """The image's file, checked to lie inside the images folder now (it may have been replaced)."""
        try:
            path = catalog.inside(self.images_dir, image.path)
        except catalog.OutsideFolderError as exc:
            raise Forbidden(str(exc)) from exc
        if not path.is_file():
            raise NotFound(f"Image file {image.path} is no longer in the images folder.")
        return path

    def pixels(self, image: ImageRow) -> np.ndarray:
        """The image as ``H x W x 3`` uint8 RGB, checked to still have its registered size."""
        pixels = load_image(self.image_file(image))
        if pixels.shape[:2] != (image.height, image.width):
            raise Conflict(
                f"Image {image.path} is now {pixels.shape[1]} x {pixels.shape[0]} pixels, not the "
                f"{image.width} x {image.height} it was registered with; restore the original file."
            )
        return pixels

    def embedding(self, image: ImageRow) -> tuple[Embedding, bool]:
        """The image's embedding and whether it came from the cache."""
        return self.cache.get(image.id, self.image_file(image), lambda _: self.pixels(image))

    # --- predictions -------------------------------------------------------------------------------

    def predict(
        self,
        image: ImageRow,
        points: Sequence[Sequence[float]],
        labels: Sequence[int],
        box: Sequence[float] | None,
        previous: tuple[str, int] | None,
        multimask: bool | None,
    ) -> tuple[str, np.ndarray, np.ndarray]:
        """Masks for prompts in image pixels (points ``N x 2`` XY, box XYXY), refining candidate
        ``previous = (prediction id, index)`` if given. Returns ``(prediction id, C x H x W bool masks,
        C scores)``."""
        check_inside(points, box, image.width, image.height)
        mask_input = None
        if previous is not None:
            prediction_id, index = previous
            earlier = self.predictions.get(prediction_id)
            if earlier is None:
                raise NotFound("That earlier prediction is no longer kept; predict again without 'previous'.")
            if earlier.image_id != image.id:
                raise ServiceError(f"That earlier prediction was made on image {earlier.image_id}.")
            if index >= len(earlier.low_res_logits):
                raise ServiceError(
                    f"previous.index must be below {len(earlier.low_res_logits)}, the number of candidates."
                )
            mask_input = earlier.low_res_logits[index][None]
        embedding, _ = self.embedding(image)
        # The photo is read only if a prompt takes the zoom-in pass (one-pass clicks never decode it).
        masks, scores, low_res = predictor_for(self.model, embedding, lambda: self.pixels(image)).predict(
            point_coords=np.asarray(points, dtype=np.float32) if len(points) else None,
            point_labels=np.asarray(labels, dtype=np.int64) if len(points) else None,
            box=np.asarray(box, dtype=np.float32) if box is not None else None,
            mask_input=mask_input,
            multimask_output=is_ambiguous(len(points), box is not None) if multimask is None else multimask,
        )
        return self.predictions.add(Prediction(image.id, low_res)), masks, scores

    # --- annotations -------------------------------------------------------------------------------

    def checked_mask(self, mask: dict[str, Any], image: ImageRow) -> dict[str, Any]:
        """A client's RLE checked against the image (see :func:`segany.app.mask_checks.checked_rle`)."""
        try:
            return checked_rle(mask, image.height, image.width)
        except ValueError as exc:
            raise ServiceError(f"Invalid mask: {exc}") from exc

    def add_annotation(self, image: ImageRow, mask: dict[str, Any], **fields: Any) -> int:
        """Store a manual annotation; ``fields`` are those of :class:`NewAnnotation` but the mask's."""
        rle = self.checked_mask(mask, image)
        new = NewAnnotation(
            mask=rle, area=rle_utils.area(rle), bbox=bbox_xywh(rle), source="manual", **fields
        )
        (annotation_id,) = self.storage.add_annotations(image.id, [new])
        return annotation_id

    def change_annotation(self, annotation_id: int, **changes: Any) -> AnnotationRow:
        """Change any of ``label``, ``status``, ``mask`` (None values are left as they are)."""
        row = self.storage.annotation(annotation_id)
        if row is None:
            raise NotFound(f"No annotation with id {annotation_id}.")
        changes = {key: value for key, value in changes.items() if value is not None}
        if "mask" in changes:
            rle = self.checked_mask(changes["mask"], self.image(row.image_id))
            changes.update(mask=rle, area=rle_utils.area(rle), bbox=bbox_xywh(rle))
        updated = self.storage.update_annotation(annotation_id, **changes) if changes else row
        if updated is None:  # deleted meanwhile
            raise NotFound(f"No annotation with id {annotation_id}.")
        return updated

    def delete_annotation(self, annotation_id: int) -> None:
        if not self.storage.delete_annotation(annotation_id):
            raise NotFound(f"No annotation with id {annotation_id}.")

    # --- pre-fill, background work, export ---------------------------------------------------------

    def prefill(self, image: ImageRow, points_per_side: int) -> list[AnnotationRow]:
        """Run the automatic generator on ``image``; store its masks as proposals replacing older ones."""
        from ..automatic import SamAutomaticMaskGenerator
        from ..runtime import reuse_freed_memory

        reuse_freed_memory()  # the server's process is ours (see segany.runtime.reuse_freed_memory)
        pixels = self.pixels(image)
        generator = SamAutomaticMaskGenerator(
            self.model, points_per_side=points_per_side, output_mode="coco_rle"
        )
        proposals = [
            NewAnnotation(
                mask=rle_utils.compress(record["segmentation"]),
                area=int(record["area"]),
                bbox=[round(v) for v in record["bbox"]],
                prompts={
                    "point_coords": record["point_coords"],
                    "predicted_iou": record["predicted_iou"],
                    "stability_score": record["stability_score"],
                },
                source="prefill",
                status="proposed",
            )
            for record in generator.generate(pixels)
            if record["area"] > 0
        ]
        ids = set(self.storage.add_annotations(image.id, proposals, replace_proposed_from="prefill"))
        return [a for a in self.storage.annotations(image.id, ("proposed",)) if a.id in ids]

    def enqueue(self, image_ids: Sequence[int], prefill: bool) -> None:
        """Queue background embedding (and pre-fill) of known images."""
        for image_id in image_ids:
            self.image(image_id)
        self.queue.submit(image_ids, prefill)

    def run_job(self, image_id: int, prefill: bool) -> None:
        """The background worker's job: embed the image and, if asked, pre-fill it."""
        image = self.image(image_id)
        self.embedding(image)
        if prefill:
            self.prefill(image, DEFAULT_PREFILL_POINTS_PER_SIDE)

    def export_zip(self, format: str) -> Path:
        """A zip of the export of all accepted annotations, in a new temporary folder (the caller removes
        ``archive.parent``). Hidden entries, a writer's working files (e.g. COCO's parts), are left out."""
        work = Path(tempfile.mkdtemp(prefix="segany-export-"))
        try:
            out_dir = work / format
            export_annotations(self.storage, out_dir, format)
            archive = work / f"segany-{format}.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(out_dir.rglob("*")):
                    relative = path.relative_to(out_dir)
                    if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                        zf.write(path, relative.as_posix())
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return archive
