"""The annotation server: :func:`create_app` builds the FastAPI application (no globals, nothing on import).

API (JSON under ``/api``; errors are ``{"detail": "one sentence"}`` with a 4xx status; coordinates are
pixels of the original image; masks are COCO RLE, sent back uncompressed, see :mod:`segany.app.masks`):

====== =============================== ==============================================================
GET    /api/images                     ``{"images": [{"id", "name", "width", "height", "accepted",
                                       "proposed", "embedded"}], "total", "annotated"}``; ``?rescan=true``
                                       first registers images added to the folder since the start
GET    /api/images/{id}/file           the image file's bytes
POST   /api/images/{id}/embed          ``{"cached", "seconds"}``: the embedding, computed now or cached
POST   /api/images/{id}/predict        body ``{"points", "labels", "box", "previous", "multimask"}`` ->
                                       ``{"prediction_id", "masks", "scores", "seconds"}``
GET    /api/images/{id}/annotations    ``{"annotations": [annotation, ...]}``
POST   /api/images/{id}/annotations    body ``{"mask", "label", "prompts", "seconds", "annotator",
                                       "status"}`` -> 201 ``{"id"}`` (source ``manual``)
PATCH  /api/annotations/{id}           body with any of ``label``, ``mask``, ``status`` -> the annotation
DELETE /api/annotations/{id}           204
POST   /api/images/{id}/prefill        optional body ``{"points_per_side": 16}`` -> ``{"annotations"}``:
                                       the automatic generator's masks, stored as ``proposed`` (replacing
                                       the image's earlier unreviewed pre-fill proposals)
POST   /api/queue                      body ``{"image_ids", "prefill"}`` -> the queue status below
GET    /api/queue                      ``{"pending", "done", "current", "errors": [{"image_id", "detail"}]}``
GET    /api/labels                     ``{"labels"}``: labels in use, most used first
POST   /api/export                     body ``{"format": "sa1b" | "coco" | "png" | "yolo"}`` -> a zip of
                                       the export of all accepted annotations (see :mod:`.transfer`)
GET    /                               the UI (``static/index.html``), its files under ``/static``
====== =============================== ==============================================================

An annotation is ``{"id", "image_id", "label", "status", "source", "mask", "bbox" (XYWH), "area",
"seconds", "annotator", "prompts", "created", "updated"}``.

Status codes: 400 malformed JSON, 401 missing or wrong token, 403 an image path that leads outside the
images folder (a symlink), 404 unknown id (or a prediction no longer kept), 409 an image file changed
size since it was registered, 413 body over the limit, 422 well-formed but invalid input.

Additions to the issue's API: ``image_id``, ``prompts`` and ``updated`` in annotations; ``?rescan=true``;
the token is also accepted from a cookie, which a request authorised by ``?token=`` sets, so that the
page's scripts and styles load without the token in their URLs.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import Body, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ImageError, SegAnyError
from ..formats import rle as rle_utils
from ..images import load_image
from ..modeling import Sam
from . import api_models as m
from . import catalog
from .embeddings import (
    BackgroundQueue,
    Embedding,
    EmbeddingCache,
    Prediction,
    RecentPredictions,
    predictor_for,
)
from .masks import MaskError, bbox_xywh, checked_rle
from .middleware import BodyLimit, TokenAuth
from .storage import AnnotationRow, ImageRow, NewAnnotation, Storage
from .transfer import export_annotations

DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024
STATIC_DIR = Path(__file__).resolve().parent / "static"
CACHE_DIR_NAME = ".segany-cache"

_NO_UI = """<!doctype html><html><head><meta charset="utf-8"><title>segany annotate</title></head>
<body><p>The annotation UI is not installed (no <code>segany/app/static/index.html</code>);
the API is served under <code>/api</code>.</p></body></html>"""


class _State:
    """What the routes share: the folder, the database, the model (loaded on first use) and its caches."""

    def __init__(
        self, images_dir: Path, storage: Storage, model_factory: Callable[[], Sam], cache_dir: Path
    ) -> None:
        self.images_dir = images_dir
        self.storage = storage
        self.cache_dir = cache_dir
        self._model_factory = model_factory
        self._cache: EmbeddingCache | None = None
        self._lock = threading.Lock()
        self.predictions = RecentPredictions()
        self.queue = BackgroundQueue(self.run_job)

    @property
    def cache(self) -> EmbeddingCache:
        """The embedding cache of the model, which is built (by ``model_factory``) on first use."""
        with self._lock:
            if self._cache is None:
                self._cache = EmbeddingCache(self.cache_dir, self._model_factory())
            return self._cache

    @property
    def model(self) -> Sam:
        return self.cache.model

    def image(self, image_id: int) -> ImageRow:
        image = self.storage.image(image_id)
        if image is None:
            raise HTTPException(404, f"No image with id {image_id}; list them with GET /api/images.")
        return image

    def image_file(self, image: ImageRow) -> Path:
        try:
            path = catalog.inside(self.images_dir, image.path)
        except catalog.OutsideFolderError as exc:
            raise HTTPException(403, str(exc)) from exc
        if not path.is_file():
            raise HTTPException(404, f"Image file {image.path} is no longer in the images folder.")
        return path

    def load(self, image: ImageRow, path: Path) -> np.ndarray:
        pixels = load_image(path)
        if pixels.shape[:2] != (image.height, image.width):
            raise HTTPException(
                409,
                f"Image {image.path} is now {pixels.shape[1]} x {pixels.shape[0]} pixels, not the "
                f"{image.width} x {image.height} it was registered with; restore the original file.",
            )
        return pixels

    def embedding(self, image: ImageRow) -> tuple[Embedding, bool]:
        path = self.image_file(image)
        return self.cache.get(image.id, path, lambda p: self.load(image, p))

    def prefill(self, image: ImageRow, points_per_side: int) -> list[AnnotationRow]:
        """Run the automatic generator on ``image``; store its masks as proposals replacing older ones."""
        from ..automatic import SamAutomaticMaskGenerator

        pixels = self.load(image, self.image_file(image))
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

    def run_job(self, image_id: int, prefill: bool) -> None:
        """The background worker's job: embed the image and, if asked, pre-fill it."""
        image = self.storage.image(image_id)
        if image is None:
            raise ValueError(f"image {image_id} is no longer in the database.")
        try:
            self.embedding(image)
            if prefill:
                self.prefill(image, m.PrefillRequest().points_per_side)
        except HTTPException as exc:
            raise ValueError(str(exc.detail)) from exc


def create_app(
    images_dir: str | Path,
    db_path: str | Path,
    model_factory: Callable[[], Sam],
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    static_dir: str | Path | None = None,
) -> FastAPI:
    """The annotation app over the images in ``images_dir``, storing annotations in ``db_path``.

    Images found under ``images_dir`` are registered at once (and on ``GET /api/images?rescan=true``).
    Embeddings are cached in ``<folder of db_path>/.segany-cache/``.

    Args:
        model_factory: builds the model; called once, on the first request that needs it.
        token: if given, every request needs it (see :class:`segany.app.middleware.TokenAuth`).
        max_body_bytes: larger request bodies are refused with 413.
        static_dir: the UI's folder (default: ``segany/app/static``).
    """
    images_dir = Path(images_dir).resolve()
    if not images_dir.is_dir():
        raise ImageError(f"Images folder {images_dir} does not exist; give a folder of images.")
    storage = Storage(db_path)
    storage.add_images(catalog.scan(images_dir, storage.image_paths()))
    state = _State(images_dir, storage, model_factory, Path(db_path).resolve().parent / CACHE_DIR_NAME)
    static = Path(static_dir) if static_dir is not None else STATIC_DIR

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        state.queue.stop()

    app = FastAPI(title="segany annotate", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.segany = state
    _add_error_handlers(app)
    _add_image_routes(app, state)
    _add_annotation_routes(app, state)
    _add_work_routes(app, state)
    _add_ui_routes(app, static)
    # Added last = outermost: the token is checked before any of the body is read.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    if token:
        app.add_middleware(TokenAuth, token=token)
    return app


# --- errors ----------------------------------------------------------------------------------------


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else f"{text}."


def validation_detail(errors: list[dict[str, Any]]) -> tuple[int, str]:
    """FastAPI's list of validation errors -> ``(status, one readable sentence)`` about the first one."""
    first = errors[0]
    if first["type"] == "json_invalid":
        reason = first.get("ctx", {}).get("error", "")
        return 400, f"Request body is not valid JSON ({reason}); send a JSON object."
    section, *path = first["loc"] or ("request",)
    if section == "body" and not path and first["type"] == "missing":
        return 422, "Request body is missing; send a JSON object."
    if section == "body" and not path and first["type"] in ("model_attributes_type", "dict_type"):
        return 422, "Request body must be a JSON object, sent with Content-Type: application/json."
    # Union members add their type to the location ("counts", "list[int]", 1); readers need the field.
    path = [part for part in path if not (isinstance(part, str) and "[" in part)]
    message = str(first["msg"]).removeprefix("Value error, ")
    if first["type"] == "missing" and path and isinstance(path[-1], int):
        # A fixed-length list (a box, a point) that is too short reports its first missing index.
        message, path = "too few items", path[:-1]
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")
    more = (
        f" ({len(errors) - 1} more problem{'s' if len(errors) > 2 else ''} after this one)"
        if len(errors) > 1
        else ""
    )
    place = f"{section} field {where!r}" if where else f"request {section}"
    return 422, _sentence(f"Invalid {place}: {message}{more}")


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        status, detail = validation_detail(list(exc.errors()))
        return JSONResponse({"detail": detail}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = (
            exc.detail
            if exc.status_code != 404 or exc.detail != "Not Found"
            else "No such page or API route."
        )
        return JSONResponse(
            {"detail": _sentence(str(detail))}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(SegAnyError)
    async def bad_input(request: Request, exc: SegAnyError) -> JSONResponse:
        # segany's own errors are about the input (an unreadable image, an unusable prompt).
        return JSONResponse({"detail": _sentence(str(exc))}, status_code=422)


# --- routes ----------------------------------------------------------------------------------------


def _annotation_out(row: AnnotationRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "image_id": row.image_id,
        "label": row.label,
        "status": row.status,
        "source": row.source,
        "mask": rle_utils.to_uncompressed(row.mask),
        "bbox": row.bbox,
        "area": row.area,
        "seconds": row.seconds,
        "annotator": row.annotator,
        "prompts": row.prompts,
        "created": row.created,
        "updated": row.updated,
    }


def _checked_mask(mask: m.RleMask, image: ImageRow) -> dict[str, Any]:
    try:
        return checked_rle(mask.model_dump(), image.height, image.width)
    except MaskError as exc:
        raise HTTPException(422, _sentence(f"Invalid mask: {exc}")) from exc


def _add_image_routes(app: FastAPI, state: _State) -> None:
    @app.get("/api/images", response_model=m.ImageList)
    def list_images(rescan: bool = False) -> dict[str, Any]:
        if rescan:
            state.storage.add_images(catalog.scan(state.images_dir, state.storage.image_paths()))
        summaries = state.storage.image_summaries()
        embedded = state.cache.cached_ids()
        images = [
            {
                "id": s.image.id,
                "name": s.image.path,
                "width": s.image.width,
                "height": s.image.height,
                "accepted": s.accepted,
                "proposed": s.proposed,
                "embedded": s.image.id in embedded,
            }
            for s in summaries
        ]
        annotated = sum(1 for s in summaries if s.accepted)
        return {"images": images, "total": len(images), "annotated": annotated}

    @app.get("/api/images/{image_id}/file")
    def image_file(image_id: int) -> FileResponse:
        image = state.image(image_id)
        return FileResponse(state.image_file(image))

    @app.post("/api/images/{image_id}/embed", response_model=m.EmbedResult)
    def embed(image_id: int) -> dict[str, Any]:
        image = state.image(image_id)
        start = time.perf_counter()
        _, cached = state.embedding(image)
        return {"cached": cached, "seconds": time.perf_counter() - start}

    @app.post("/api/images/{image_id}/predict", response_model=m.PredictResult)
    def predict(image_id: int, request: m.PredictRequest) -> dict[str, Any]:
        image = state.image(image_id)
        start = time.perf_counter()
        mask_input = None
        if request.previous is not None:
            previous = state.predictions.get(request.previous.prediction_id)
            if previous is None:
                raise HTTPException(
                    404, "That earlier prediction is no longer kept; predict again without 'previous'."
                )
            if previous.image_id != image.id:
                raise HTTPException(422, f"That earlier prediction was made on image {previous.image_id}.")
            if request.previous.index >= len(previous.low_res_logits):
                raise HTTPException(
                    422,
                    f"previous.index must be below {len(previous.low_res_logits)}, the number of candidates.",
                )
            mask_input = previous.low_res_logits[request.previous.index][None]
        embedding, _ = state.embedding(image)
        predictor = predictor_for(state.model, embedding)
        masks, scores, low_res = predictor.predict(
            point_coords=np.asarray(request.points, dtype=np.float32) if request.points else None,
            point_labels=np.asarray(request.labels, dtype=np.int64) if request.points else None,
            box=np.asarray(request.box, dtype=np.float32) if request.box is not None else None,
            mask_input=mask_input,
            multimask_output=request.multimask,
        )
        prediction_id = state.predictions.add(Prediction(image.id, low_res))
        return {
            "prediction_id": prediction_id,
            "masks": [rle_utils.uncompressed(mask) for mask in masks],
            "scores": [float(s) for s in scores],
            "seconds": time.perf_counter() - start,
        }


def _add_annotation_routes(app: FastAPI, state: _State) -> None:
    @app.get("/api/images/{image_id}/annotations", response_model=m.AnnotationList)
    def list_annotations(image_id: int) -> dict[str, Any]:
        image = state.image(image_id)
        return {"annotations": [_annotation_out(a) for a in state.storage.annotations(image.id)]}

    @app.post("/api/images/{image_id}/annotations", response_model=m.Created, status_code=201)
    def add_annotation(image_id: int, request: m.NewAnnotation) -> dict[str, Any]:
        image = state.image(image_id)
        mask = _checked_mask(request.mask, image)
        new = NewAnnotation(
            mask=mask,
            area=rle_utils.area(mask),
            bbox=bbox_xywh(mask),
            label=request.label.strip(),
            prompts=request.prompts,
            source="manual",
            status=request.status,
            annotator=request.annotator.strip(),
            seconds=request.seconds,
        )
        (annotation_id,) = state.storage.add_annotations(image.id, [new])
        return {"id": annotation_id}

    @app.patch("/api/annotations/{annotation_id}", response_model=m.Annotation)
    def change_annotation(annotation_id: int, request: m.AnnotationPatch) -> dict[str, Any]:
        row = state.storage.annotation(annotation_id)
        if row is None:
            raise HTTPException(404, f"No annotation with id {annotation_id}.")
        changes: dict[str, Any] = {}
        if request.label is not None:
            changes["label"] = request.label.strip()
        if request.status is not None:
            changes["status"] = request.status
        if request.mask is not None:
            mask = _checked_mask(request.mask, state.image(row.image_id))
            changes.update(mask=mask, area=rle_utils.area(mask), bbox=bbox_xywh(mask))
        updated = state.storage.update_annotation(annotation_id, **changes) if changes else row
        if updated is None:
            raise HTTPException(404, f"No annotation with id {annotation_id}.")
        return _annotation_out(updated)

    @app.delete("/api/annotations/{annotation_id}", status_code=204)
    def delete_annotation(annotation_id: int) -> Response:
        if not state.storage.delete_annotation(annotation_id):
            raise HTTPException(404, f"No annotation with id {annotation_id}.")
        return Response(status_code=204)

    @app.get("/api/labels", response_model=m.Labels)
    def labels() -> dict[str, Any]:
        return {"labels": state.storage.labels()}


def _add_work_routes(app: FastAPI, state: _State) -> None:
    @app.post("/api/images/{image_id}/prefill", response_model=m.AnnotationList)
    def prefill(image_id: int, request: Annotated[m.PrefillRequest | None, Body()] = None) -> dict[str, Any]:
        image = state.image(image_id)
        options = request or m.PrefillRequest()
        return {"annotations": [_annotation_out(a) for a in state.prefill(image, options.points_per_side)]}

    @app.post("/api/queue", response_model=m.QueueStatus)
    def enqueue(request: m.QueueRequest) -> dict[str, Any]:
        for image_id in request.image_ids:
            state.image(image_id)
        state.queue.submit(request.image_ids, request.prefill)
        return state.queue.progress()

    @app.get("/api/queue", response_model=m.QueueStatus)
    def queue_status() -> dict[str, Any]:
        return state.queue.progress()

    @app.post("/api/export")
    def export(request: m.ExportRequest) -> FileResponse:
        work = Path(tempfile.mkdtemp(prefix="segany-export-"))
        try:
            out_dir = work / request.format
            export_annotations(state.storage, out_dir, request.format)
            archive = work / f"segany-{request.format}.zip"
            with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(out_dir.rglob("*")):
                    # Hidden entries are a writer's working files (e.g. COCO's per-image parts).
                    relative = path.relative_to(out_dir)
                    if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                        zf.write(path, relative.as_posix())
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        return FileResponse(
            archive,
            media_type="application/zip",
            filename=archive.name,
            background=BackgroundTask(shutil.rmtree, work, ignore_errors=True),
        )


def _add_ui_routes(app: FastAPI, static: Path) -> None:
    if static.is_dir():
        app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = static / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse(_NO_UI)
