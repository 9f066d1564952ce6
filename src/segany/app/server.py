"""The annotation server: :func:`create_app` builds the FastAPI application (no globals, nothing on import).

API (JSON under ``/api``; errors are ``{"detail": "one sentence"}`` with a 4xx status; coordinates are
pixels of the original image; masks are COCO RLE, sent back uncompressed, see :mod:`segany.app.mask_checks`):

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

Status codes: 400 malformed JSON or a ``Host`` the server was not started for, 401 missing or wrong
token, 403 an image path that leads outside the images folder (a symlink), 404 unknown id (or a
prediction no longer kept), 409 an image file changed size since it was registered, 413 body over the
limit, 415 a POST / PATCH / DELETE without ``Content-Type: application/json`` (or ``X-Requested-With``),
422 well-formed but invalid input (prompts outside the image included).

Security model (see :mod:`.middleware`): the server listens on 127.0.0.1 by default; ``--token`` makes
every request carry a secret (``Authorization: Bearer``, ``?token=``, or the cookie a ``?token=`` request
sets so that the page's scripts load without it); requests must name the server by IP address,
``localhost`` or an allowed host name (no DNS rebinding); state-changing requests must be ones a
cross-site form cannot send; responses forbid framing and carry a Content-Security-Policy. The API is
described at ``/docs`` (Swagger UI) and ``/redoc``; they load their viewer from a CDN.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import Body, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import ImageError, SegAnyError
from ..formats import rle as rle_utils
from ..modeling import Sam
from ..store.storage import AnnotationRow, Storage
from . import api_models as m
from .middleware import BodyLimit, HostCheck, SameOriginWrites, SecurityHeaders, TokenAuth
from .service import AnnotationService

DEFAULT_MAX_BODY_BYTES = 50 * 1024 * 1024
STATIC_DIR = Path(__file__).resolve().parent / "static"
CACHE_DIR_NAME = ".segany-cache"

log = logging.getLogger(__name__)

_NO_UI = """<!doctype html><html><head><meta charset="utf-8"><title>segany annotate</title></head>
<body><p>The annotation UI is not installed (no <code>segany/app/static/index.html</code>);
the API is served under <code>/api</code>.</p></body></html>"""


def create_app(
    images_dir: str | Path,
    db_path: str | Path,
    model_factory: Callable[[], Sam],
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    static_dir: str | Path | None = None,
    allowed_hosts: Iterable[str] = (),
) -> FastAPI:
    """The annotation app over the images in ``images_dir``, storing annotations in ``db_path``.

    Images found under ``images_dir`` are registered at once (and on ``GET /api/images?rescan=true``).
    Embeddings are cached in ``<folder of db_path>/.segany-cache/``. The app's
    :class:`~segany.app.service.AnnotationService` is ``app.state.segany``.

    Args:
        model_factory: builds the model; called once, on the first request that needs it.
        token: if given, every request needs it (see :class:`segany.app.middleware.TokenAuth`).
        max_body_bytes: larger request bodies are refused with 413.
        static_dir: the UI's folder (default: ``segany/app/static``).
        allowed_hosts: host names (besides ``localhost`` and IP addresses) that requests may name in
            their ``Host`` header, e.g. the machine's name when serving a network; others get 400.
    """
    images_dir = Path(images_dir).resolve()
    if not images_dir.is_dir():
        raise ImageError(f"Images folder {images_dir} does not exist; give a folder of images.")
    cache_dir = Path(db_path).resolve().parent / CACHE_DIR_NAME
    service = AnnotationService(images_dir, Storage(db_path), model_factory, cache_dir)
    service.rescan()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        service.queue.stop()

    app = FastAPI(title="segany annotate", lifespan=lifespan)  # API docs at /docs and /redoc
    app.state.segany = service
    _add_error_handlers(app)
    _add_image_routes(app, service)
    _add_annotation_routes(app, service)
    _add_work_routes(app, service)
    _add_ui_routes(app, Path(static_dir) if static_dir is not None else STATIC_DIR)
    # Added last = outermost: host, then token, then the request's form, before any body is read.
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_middleware(SameOriginWrites)
    if token:
        app.add_middleware(TokenAuth, token=token)
    app.add_middleware(HostCheck, names=allowed_hosts)
    app.add_middleware(SecurityHeaders)
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

    @app.exception_handler(Exception)
    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not bad input: the traceback goes to the server log, the client gets one sentence.
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        detail = f"Internal error ({type(exc).__name__}) while answering this request; see the server log."
        return JSONResponse({"detail": detail}, status_code=500)

    @app.exception_handler(SegAnyError)
    async def refused(request: Request, exc: SegAnyError) -> JSONResponse:
        # The service's errors carry their status; segany's others are about the input (an unreadable
        # image, an unusable prompt).
        status = getattr(exc, "status", 422)
        return JSONResponse({"detail": _sentence(str(exc))}, status_code=status)


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


def _add_image_routes(app: FastAPI, service: AnnotationService) -> None:
    @app.get("/api/images", response_model=m.ImageList)
    def list_images(rescan: bool = False) -> dict[str, Any]:
        if rescan:
            service.rescan()
        summaries = service.storage.image_summaries()
        embedded = service.cache.cached_ids()
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
        return FileResponse(service.image_file(service.image(image_id)))

    @app.post("/api/images/{image_id}/embed", response_model=m.EmbedResult)
    def embed(image_id: int) -> dict[str, Any]:
        image = service.image(image_id)
        start = time.perf_counter()
        _, cached = service.embedding(image)
        return {"cached": cached, "seconds": time.perf_counter() - start}

    @app.post("/api/images/{image_id}/predict", response_model=m.PredictResult)
    def predict(image_id: int, request: m.PredictRequest) -> dict[str, Any]:
        image = service.image(image_id)
        start = time.perf_counter()
        previous = request.previous
        prediction_id, masks, scores = service.predict(
            image,
            request.points,
            request.labels,
            request.box,
            (previous.prediction_id, previous.index) if previous is not None else None,
            request.multimask,
        )
        return {
            "prediction_id": prediction_id,
            "masks": [rle_utils.uncompressed(mask) for mask in masks],
            "scores": [float(s) for s in scores],
            "seconds": time.perf_counter() - start,
        }


def _add_annotation_routes(app: FastAPI, service: AnnotationService) -> None:
    @app.get("/api/images/{image_id}/annotations", response_model=m.AnnotationList)
    def list_annotations(image_id: int) -> dict[str, Any]:
        image = service.image(image_id)
        return {"annotations": [_annotation_out(a) for a in service.storage.annotations(image.id)]}

    @app.post("/api/images/{image_id}/annotations", response_model=m.Created, status_code=201)
    def add_annotation(image_id: int, request: m.NewAnnotation) -> dict[str, Any]:
        annotation_id = service.add_annotation(
            service.image(image_id),
            request.mask.model_dump(),
            label=request.label.strip(),
            prompts=request.prompts,
            status=request.status,
            annotator=request.annotator.strip(),
            seconds=request.seconds,
        )
        return {"id": annotation_id}

    @app.patch("/api/annotations/{annotation_id}", response_model=m.Annotation)
    def change_annotation(annotation_id: int, request: m.AnnotationPatch) -> dict[str, Any]:
        row = service.change_annotation(
            annotation_id,
            label=request.label.strip() if request.label is not None else None,
            status=request.status,
            mask=request.mask.model_dump() if request.mask is not None else None,
        )
        return _annotation_out(row)

    @app.delete("/api/annotations/{annotation_id}", status_code=204)
    def delete_annotation(annotation_id: int) -> Response:
        service.delete_annotation(annotation_id)
        return Response(status_code=204)

    @app.get("/api/labels", response_model=m.Labels)
    def labels() -> dict[str, Any]:
        return {"labels": service.storage.labels()}


def _add_work_routes(app: FastAPI, service: AnnotationService) -> None:
    @app.post("/api/images/{image_id}/prefill", response_model=m.AnnotationList)
    def prefill(image_id: int, request: Annotated[m.PrefillRequest | None, Body()] = None) -> dict[str, Any]:
        image = service.image(image_id)
        options = request or m.PrefillRequest()
        return {"annotations": [_annotation_out(a) for a in service.prefill(image, options.points_per_side)]}

    @app.post("/api/queue", response_model=m.QueueStatus)
    def enqueue(request: m.QueueRequest) -> dict[str, Any]:
        service.enqueue(request.image_ids, request.prefill)
        return service.queue.progress()

    @app.get("/api/queue", response_model=m.QueueStatus)
    def queue_status() -> dict[str, Any]:
        return service.queue.progress()

    @app.post("/api/export")
    def export(request: m.ExportRequest) -> FileResponse:
        archive = service.export_zip(request.format)
        return FileResponse(
            archive,
            media_type="application/zip",
            filename=archive.name,
            background=BackgroundTask(shutil.rmtree, archive.parent, ignore_errors=True),
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
