"""Model state kept between requests: image embeddings (on disk and in memory), recent predictions'
low-resolution logits, and the one background worker that embeds and pre-fills queued images.

Cache files: ``CACHE_DIR/<image id>-<model fingerprint>.pt``, a ``torch.save`` of ``{"features": 1 x C x
h x w float32, "original_size": [H, W], "input_size": [h', w'], "file": [bytes, mtime_ns]}``. The
fingerprint changes with the weights and the compute precision, so a cache never serves another model's
embedding; ``file`` (size and modification time of the image file) makes a replaced image re-embed.

A cached embedding is restored into a fresh :class:`segany.SamPredictor` by its public
:meth:`~segany.SamPredictor.set_embedding`.
"""

from __future__ import annotations

import hashlib
import io
import logging
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..formats.base import atomic_write_bytes
from ..modeling import Sam
from ..predictor import SamPredictor

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embedding:
    """One image's embedding: ``features`` ``1 x C x h x w`` float32 on the CPU, ``original_size`` ``(H, W)``
    of the image, ``input_size`` ``(h', w')`` after resizing its longest side to the model's input."""

    features: torch.Tensor
    original_size: tuple[int, int]
    input_size: tuple[int, int]


def model_fingerprint(model: Sam) -> str:
    """A short hex digest of the architecture, the weights and the compute precision of ``model``.

    Each tensor contributes its name, shape, first values and sum (float64), which tells apart any two
    trainings without hashing gigabytes of weights.
    """
    digest = hashlib.sha256(f"{model.img_size}|{model.compute_dtype}".encode())
    with torch.no_grad():
        for name, tensor in sorted(model.state_dict().items()):
            flat = tensor.detach().reshape(-1).to("cpu", torch.float64)
            digest.update(f"{name}|{tuple(tensor.shape)}|{float(flat.sum())!r}".encode())
            digest.update(flat[:8].numpy().tobytes())
    return digest.hexdigest()[:16]


def compute_embedding(model: Sam, image: np.ndarray) -> Embedding:
    """Embed an ``H x W x 3`` uint8 RGB image with the model's image encoder."""
    predictor = SamPredictor(model)
    predictor.set_image(image)
    return Embedding(
        predictor.get_image_embedding().detach().to("cpu", torch.float32),
        tuple(predictor.original_size),  # type: ignore[arg-type]
        tuple(predictor.input_size),  # type: ignore[arg-type]
    )


def predictor_for(
    model: Sam, embedding: Embedding, image: np.ndarray | Callable[[], np.ndarray] | None = None
) -> SamPredictor:
    """A new predictor with ``embedding`` set, as if :meth:`SamPredictor.set_image` had computed it.

    ``image`` (``H x W x 3`` uint8 RGB, or a function that reads it when first needed) lets a model with
    a zoom-in pass redo prompts on small objects.
    """
    predictor = SamPredictor(model)
    predictor.set_embedding(embedding.features, embedding.original_size, image=image)
    return predictor


def _file_stamp(path: Path) -> list[int]:
    stat = path.stat()
    return [int(stat.st_size), int(stat.st_mtime_ns)]


class EmbeddingCache:
    """Embeddings by image id: in memory for the last ``memory_items`` images, on disk for all.

    Thread-safe; two requests for the same image compute its embedding once.
    """

    def __init__(self, cache_dir: Path, model: Sam, memory_items: int = 8) -> None:
        self.cache_dir = Path(cache_dir)
        self.model = model
        self.fingerprint = model_fingerprint(model)
        self.memory_items = memory_items
        self._memory: OrderedDict[int, tuple[list[int], Embedding]] = OrderedDict()
        self._lock = threading.Lock()
        self._image_locks: dict[int, threading.Lock] = {}

    def path(self, image_id: int) -> Path:
        return self.cache_dir / f"{image_id}-{self.fingerprint}.pt"

    def cached_ids(self) -> set[int]:
        """Ids of images with an embedding file for this model (one folder listing, not one stat each)."""
        suffix = f"-{self.fingerprint}.pt"
        if not self.cache_dir.is_dir():
            return set()
        return {
            int(name[: -len(suffix)])
            for name in (p.name for p in self.cache_dir.iterdir())
            if name.endswith(suffix) and name[: -len(suffix)].isdigit()
        }

    def get(
        self, image_id: int, image_path: Path, load: Callable[[Path], np.ndarray]
    ) -> tuple[Embedding, bool]:
        """The embedding of image ``image_id`` (file ``image_path``) and whether it was cached.

        ``load`` reads the image (``H x W x 3`` uint8 RGB) when the embedding must be computed.
        """
        stamp = _file_stamp(image_path)
        with self._lock:
            lock = self._image_locks.setdefault(image_id, threading.Lock())
        with lock:
            embedding = self._from_memory(image_id, stamp) or self._from_disk(image_id, stamp)
            cached = embedding is not None
            if embedding is None:
                embedding = compute_embedding(self.model, load(image_path))
                self._to_disk(image_id, stamp, embedding)
            with self._lock:
                self._memory[image_id] = (stamp, embedding)
                self._memory.move_to_end(image_id)
                while len(self._memory) > self.memory_items:
                    self._memory.popitem(last=False)
        return embedding, cached

    def _from_memory(self, image_id: int, stamp: list[int]) -> Embedding | None:
        with self._lock:
            entry = self._memory.get(image_id)
        return entry[1] if entry is not None and entry[0] == stamp else None

    def _from_disk(self, image_id: int, stamp: list[int]) -> Embedding | None:
        path = self.path(image_id)
        if not path.is_file():
            return None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
            if list(data["file"]) != stamp:
                return None  # the image file was replaced since
            return Embedding(
                data["features"].float(), tuple(data["original_size"]), tuple(data["input_size"])
            )
        except Exception as exc:  # a damaged cache file is recomputed, never fatal
            log.warning("recomputing the embedding of image %d: cannot read %s (%s)", image_id, path, exc)
            return None

    def _to_disk(self, image_id: int, stamp: list[int], embedding: Embedding) -> None:
        buffer = io.BytesIO()
        torch.save(
            {
                "features": embedding.features,
                "original_size": list(embedding.original_size),
                "input_size": list(embedding.input_size),
                "file": stamp,
            },
            buffer,
        )
        atomic_write_bytes(self.path(image_id), buffer.getvalue())


@dataclass(frozen=True)
class Prediction:
    """A prediction's image and its candidates' low-resolution logits, ``C x 256 x 256`` float32."""

    image_id: int
    low_res_logits: np.ndarray


class RecentPredictions:
    """The last ``capacity`` predictions by id, so a client can refine one (its logits as ``mask_input``)."""

    def __init__(self, capacity: int = 32) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, Prediction] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, prediction: Prediction) -> str:
        """Keep ``prediction``, forgetting the oldest beyond capacity; returns its new id."""
        prediction_id = uuid.uuid4().hex
        with self._lock:
            self._items[prediction_id] = prediction
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return prediction_id

    def get(self, prediction_id: str) -> Prediction | None:
        with self._lock:
            prediction = self._items.get(prediction_id)
            if prediction is not None:
                self._items.move_to_end(prediction_id)
        return prediction


class BackgroundQueue:
    """One worker thread running ``run(image_id, prefill)`` for queued images, in order, with progress.

    The thread starts on the first :meth:`submit` and ends on :meth:`stop`. A job that raises is recorded
    in ``errors`` (the last :data:`MAX_ERRORS`) and logged; the worker goes on with the next one.
    """

    MAX_ERRORS = 100

    def __init__(self, run: Callable[[int, bool], None]) -> None:
        self._run = run
        self._jobs: deque[tuple[int, bool]] = deque()
        self._condition = threading.Condition()
        self._done = 0
        self._current: int | None = None
        self._errors: deque[dict[str, Any]] = deque(maxlen=self.MAX_ERRORS)
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, image_ids: Iterable[int], prefill: bool) -> int:
        """Queue images not already waiting with the same ``prefill``; returns how many were added."""
        with self._condition:
            if self._stopping:
                raise RuntimeError("the background queue is stopped; restart the server to queue work.")
            waiting = set(self._jobs)
            added = 0
            for image_id in image_ids:
                job = (int(image_id), bool(prefill))
                if job not in waiting:
                    self._jobs.append(job)
                    waiting.add(job)
                    added += 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="segany-background", daemon=True)
                self._thread.start()
            self._condition.notify()
        return added

    def progress(self) -> dict[str, Any]:
        """``{"pending": int, "done": int, "current": image id | None, "errors": [{"image_id", "detail"}]}``."""
        with self._condition:
            return {
                "pending": len(self._jobs),
                "done": self._done,
                "current": self._current,
                "errors": list(self._errors),
            }

    def wait_idle(self, timeout: float) -> bool:
        """Block until nothing is queued or running (True), or ``timeout`` seconds pass (False)."""
        deadline = time.monotonic() + timeout
        with self._condition:
            while self._jobs or self._current is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._condition.wait(left)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Drop queued jobs, let the running one finish (up to ``timeout`` seconds) and end the thread."""
        with self._condition:
            self._stopping = True
            self._jobs.clear()
            self._condition.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self) -> None:
        while True:
            with self._condition:
                while not self._jobs and not self._stopping:
                    self._condition.wait()
                if self._stopping:
                    return
                image_id, prefill = self._jobs.popleft()
                self._current = image_id
            try:
                self._run(image_id, prefill)
            except Exception as exc:  # recorded for the client and logged, then on to the next image
                log.exception("background job for image %d failed", image_id)
                with self._condition:
                    self._errors.append({"image_id": image_id, "detail": str(exc) or type(exc).__name__})
            with self._condition:
                self._done += 1
                self._current = None
                self._condition.notify_all()
