"""Request and response bodies of the annotation API (pydantic models; FastAPI validates with them).

Coordinates are pixels of the original image: points ``[x, y]``, boxes ``[x0, y0, x1, y1]`` (XYXY),
``bbox`` ``[x, y, w, h]`` (XYWH). Masks are COCO RLE over the image, ``size`` ``[H, W]`` (see
:mod:`segany.app.mask_checks`); responses always send the uncompressed form (``counts`` a list of ints).
Request models refuse unknown keys, so a misspelt field is an error, not silently ignored.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from ..prompts import MAX_INTERACTIVE_POINTS

Finite = Annotated[float, Field(allow_inf_nan=False)]
Status = Literal["accepted", "proposed", "rejected"]
Source = Literal["manual", "prefill", "import"]
ExportFormat = Literal["sa1b", "coco", "png", "yolo"]
Label = Annotated[str, Field(max_length=200)]
MAX_PROMPTS_BYTES = 64 * 1024  # an annotation's stored prompts, as compact JSON


def _small_json(value: Any) -> Any:
    size = len(json.dumps(value, separators=(",", ":")))
    if size > MAX_PROMPTS_BYTES:
        raise ValueError(f"is {size:,} bytes of JSON; keep it under {MAX_PROMPTS_BYTES:,}")
    return value


Prompts = Annotated[Any, AfterValidator(_small_json)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RleMask(BaseModel):
    """A COCO RLE: ``size`` ``[H, W]``; ``counts`` a list of run lengths (uncompressed) or a string."""

    model_config = ConfigDict(extra="forbid")

    size: tuple[Annotated[int, Field(gt=0)], Annotated[int, Field(gt=0)]]
    counts: list[int] | str


class ImageInfo(BaseModel):
    id: int
    name: str = Field(description="path relative to the images folder")
    width: int
    height: int
    accepted: int = Field(description="number of accepted annotations")
    proposed: int = Field(description="number of proposed annotations awaiting review")
    embedded: bool = Field(description="whether the image's embedding is cached for the current model")


class ImageList(BaseModel):
    images: list[ImageInfo]
    total: int
    annotated: int = Field(description="images with at least one accepted annotation")


class EmbedResult(BaseModel):
    cached: bool
    seconds: float


class PreviousPrediction(_Request):
    prediction_id: str
    index: Annotated[int, Field(ge=0)]


class PredictRequest(_Request):
    """Prompts for one prediction; at least one point or a box."""

    points: list[tuple[Finite, Finite]] = Field(
        default_factory=list, max_length=MAX_INTERACTIVE_POINTS, description="[[x, y], ...] pixels"
    )
    labels: list[Literal[0, 1]] = Field(
        default_factory=list, max_length=MAX_INTERACTIVE_POINTS, description="1 foreground, 0 background"
    )
    box: tuple[Finite, Finite, Finite, Finite] | None = Field(None, description="[x0, y0, x1, y1] pixels")
    previous: PreviousPrediction | None = None
    multimask: bool | None = Field(
        None, description="3 candidates (true) or 1 (false); default: 3 for an ambiguous prompt (one click)"
    )

    @model_validator(mode="after")
    def _check(self) -> PredictRequest:
        if len(self.points) != len(self.labels):
            raise ValueError(
                f"give one label per point, got {len(self.points)} point(s) and {len(self.labels)} label(s)"
            )
        if not self.points and self.box is None:
            raise ValueError("give at least one point or a box")
        if self.box is not None and (self.box[2] < self.box[0] or self.box[3] < self.box[1]):
            raise ValueError("box must be [x0, y0, x1, y1] with x0 <= x1 and y0 <= y1")
        return self


class PredictResult(BaseModel):
    prediction_id: str = Field(description="pass back as previous.prediction_id to refine a candidate")
    masks: list[RleMask]
    scores: list[float]
    seconds: float


class Annotation(BaseModel):
    id: int
    image_id: int
    label: str
    status: Status
    source: Source
    mask: RleMask
    bbox: list[int] = Field(description="[x, y, w, h] pixels")
    area: int
    seconds: float
    annotator: str
    prompts: Any = None
    created: str
    updated: str


class AnnotationList(BaseModel):
    annotations: list[Annotation]


class NewAnnotation(_Request):
    mask: RleMask
    label: Label = ""
    prompts: Prompts = None
    seconds: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    annotator: Annotated[str, Field(max_length=200)] = ""
    status: Status = "accepted"


class Created(BaseModel):
    id: int


class AnnotationPatch(_Request):
    label: Label | None = None
    mask: RleMask | None = None
    status: Status | None = None


class PrefillRequest(_Request):
    points_per_side: Annotated[int, Field(ge=1, le=64)] = 16


class QueueRequest(_Request):
    image_ids: list[int]
    prefill: bool = False


class QueueError(BaseModel):
    image_id: int
    detail: str


class QueueStatus(BaseModel):
    pending: int
    done: int
    current: int | None
    errors: list[QueueError]


class Labels(BaseModel):
    labels: list[str]


class ExportRequest(_Request):
    format: ExportFormat
