"""``SamPredictor``: the official promptable-prediction API over one image (or a batch) at a time.

Frames: prompts and outputs of :meth:`SamPredictor.predict` are in the original image frame
(``(X, Y)`` pixels of the ``H x W`` image given to :meth:`set_image`); :meth:`predict_torch` takes
prompts already in the model-input frame (see :class:`segany.transforms.ResizeLongestSide`).

Text prompts (paper section 7.5) need a model with a text path and a text-image encoder
(:func:`segany.text.load_text_encoder`): ``predict(text="a red triangle")`` alone or with other prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from .backends import BACKENDS, make_backend
from .errors import ImageNotSetError, PromptError, TextEncoderError
from .images import to_rgb_array
from .modeling import Sam
from .prompts import check_boxes, check_mask_input, check_points
from .runtime import resolve_dtype
from .transforms import ResizeLongestSide, get_preprocess_shape

if TYPE_CHECKING:
    from .text.encoder import TextImageEncoder

_F = TypeVar("_F", bound=Callable[..., Any])


def _without_autograd(method: _F) -> _F:
    """Run ``method`` with autograd off and outside inference mode, also when the caller is inside
    ``torch.inference_mode()``: the embeddings and caches the predictor keeps are then ordinary tensors,
    whose version counters tell their contents apart (inference tensors have none)."""
    return torch.inference_mode(False)(torch.no_grad()(method))  # type: ignore[return-value]


@dataclass(frozen=True)
class _ImageState:
    features: torch.Tensor  # 1 x C x h x w image embedding
    original_size: tuple[int, int]  # (H, W)
    input_size: tuple[int, int]  # (h', w') after ResizeLongestSide


class SamPredictor:
    """Computes an image's embedding once, then answers many prompts on it cheaply."""

    def __init__(
        self,
        sam_model: Sam,
        dtype: str | torch.dtype | None = None,
        backend: str = "torch",
        text_encoder: TextImageEncoder | None = None,
        compile: bool = False,
    ) -> None:
        """
        Args:
            dtype: compute precision, ``float32`` (exact) or ``bfloat16`` (faster where the hardware
                has it; masks also resized to the photo the fast way, see :attr:`exact`); default the
                model's ``compute_dtype`` (see :func:`segany.build_sam`). Outputs are float32 either way.
            backend: ``"torch"``, ``"onnxruntime"`` to run the exported encoder and (low-res)
                decoder graphs with ONNX Runtime (needs ``segany[onnx]``; exported once into the cache;
                text prompts are decoded in PyTorch), or ``"onnxruntime-int8"`` for their dynamically
                quantised versions.
            text_encoder: embeds the phrases of ``predict(text=...)``; needs a model with a text path
                as wide as its embeddings. Settable later as ``predictor.text_encoder``.
            compile: run the image encoder through ``torch.compile`` (PyTorch backend only). The first
                ``set_image`` then builds the compiled code, which takes minutes on a small CPU (more
                than 10 on a 2-core CPU for vit_b); worth it for long sessions on a GPU.
        """
        if backend not in BACKENDS:
            raise ValueError(
                f"backend must be 'torch', 'onnxruntime' or 'onnxruntime-int8', got {backend!r}."
            )
        if compile and backend != "torch":
            raise ValueError("compile=True needs backend='torch' (ONNX Runtime graphs are not compiled).")
        self.model = sam_model
        self.backend = backend
        self.text_encoder = text_encoder
        self.dtype = resolve_dtype(dtype) if dtype is not None else sam_model.compute_dtype
        self._backend = make_backend(backend, sam_model, self.dtype, compile=compile)
        self.transform = ResizeLongestSide(sam_model.img_size)
        self.reset_image()

    @property
    def exact(self) -> bool:
        """Whether masks are resized to the photo exactly as the official code does (float32 compute);
        the bfloat16 path resizes them with OpenCV instead (logits within ~1e-4, 3-8x faster)."""
        return self.dtype == torch.float32

    # --- images ------------------------------------------------------------------------------------

    def set_image(self, image: Any, image_format: str = "RGB") -> None:
        """Compute the embedding of ``image``: ``H x W x 3`` uint8 (also grayscale, RGBA or a PIL image).

        ``image_format`` is ``"RGB"`` or ``"BGR"`` (as OpenCV reads files).
        """
        rgb = self._rgb(image, image_format)
        self._set_states([self._prepare(rgb, self.model.image_format)], batch=False)
        if self.model.zoom_context > 0:
            self._image = rgb  # the zoom-in pass crops the photo itself (segany.zoom)

    def set_image_batch(self, images: Sequence[Any], image_format: str = "RGB") -> None:
        """Compute the embeddings of several images in one encoder pass; then use :meth:`predict_batch`."""
        if len(images) == 0:
            raise PromptError("images is empty; give at least one image to set_image_batch.")
        self._set_states([self._prepare(image, image_format) for image in images], batch=True)

    def set_torch_image(self, transformed_image: torch.Tensor, original_image_size: tuple[int, ...]) -> None:
        """Set an image already resized by ``self.transform``: ``1 x 3 x h' x w'``, longest side ``img_size``."""
        if (
            transformed_image.ndim != 4
            or transformed_image.shape[1] != 3
            or max(*transformed_image.shape[2:]) != self.model.img_size
        ):
            raise PromptError(
                f"transformed_image must be 1 x 3 x h x w with longest side {self.model.img_size} "
                f"(apply predictor.transform.apply_image first), got {tuple(transformed_image.shape)}."
            )
        self._set_states([(transformed_image[0], tuple(original_image_size))], batch=False)

    def _rgb(self, image: Any, image_format: str) -> np.ndarray:
        """``image`` as an ``H x W x 3`` uint8 array in the model's channel order."""
        if image_format not in ("RGB", "BGR"):
            raise PromptError(f"image_format must be 'RGB' or 'BGR', got {image_format!r}.")
        image = to_rgb_array(image)
        if image_format != self.model.image_format:
            image = image[..., ::-1]
        return np.ascontiguousarray(image)

    def _prepare(self, image: Any, image_format: str) -> tuple[torch.Tensor, tuple[int, int]]:
        image = self._rgb(image, image_format)
        resized = self.transform.apply_image(np.ascontiguousarray(image))
        tensor = torch.as_tensor(resized, device=self.device).permute(2, 0, 1).contiguous()
        return tensor, (image.shape[0], image.shape[1])

    @_without_autograd
    def _set_states(self, prepared: list[tuple[torch.Tensor, tuple[int, ...]]], batch: bool) -> None:
        self.reset_image()
        tensors = [tensor.to(self.device) for tensor, _ in prepared]
        features = self._backend.embed(tensors)
        states = [
            _ImageState(
                features[i : i + 1], (int(size[0]), int(size[1])), (int(t.shape[-2]), int(t.shape[-1]))
            )
            for i, (t, (_, size)) in enumerate(zip(tensors, prepared, strict=True))
        ]
        if batch:
            self._batch = states
        else:
            state = states[0]
            self.features = state.features
            self.original_size = state.original_size
            self.input_size = state.input_size
            self.orig_h, self.orig_w = state.original_size
            self.input_h, self.input_w = state.input_size
        self.is_image_set = True

    def reset_image(self) -> None:
        """Forget the current image(s) and their embeddings."""
        self.is_image_set = False
        self.features: torch.Tensor | None = None
        self.original_size: tuple[int, int] | None = None
        self.input_size: tuple[int, int] | None = None
        self.orig_h = self.orig_w = self.input_h = self.input_w = None
        self._batch: list[_ImageState] | None = None
        # The photo for zoom-in passes (models with zoom_context), or a function that reads it when the
        # first zoom needs it (set_embedding).
        self._image: np.ndarray | Callable[[], np.ndarray] | None = None
        # Per image embedding (by identity; the entry holds it): the decoder's image-only work.
        self._image_caches: dict[int, tuple[torch.Tensor, dict[str, Any]]] = {}

    def _image_cache(self, features: torch.Tensor) -> dict[str, Any]:
        entry = self._image_caches.get(id(features))
        if entry is None:
            if len(self._image_caches) >= 8:
                self._image_caches.clear()
            entry = self._image_caches[id(features)] = (features, {})
        return entry[1]

    def _single_state(self, what: str) -> _ImageState:
        if self._batch is not None:
            raise ImageNotSetError(
                f"{what} needs one image set with set_image(); after set_image_batch() use predict_batch()."
            )
        if not self.is_image_set or self.features is None:
            raise ImageNotSetError("An image must be set with .set_image(...) before mask prediction.")
        return _ImageState(self.features, tuple(self.original_size), tuple(self.input_size))  # type: ignore[arg-type]

    def get_image_embedding(self) -> torch.Tensor:
        """The current image's embedding, ``1 x C x h x w`` (``1 x 256 x 64 x 64`` for official models)."""
        if self._batch is not None:
            return torch.cat([state.features for state in self._batch])
        return self._single_state("get_image_embedding()").features

    @_without_autograd
    def set_embedding(
        self,
        features: torch.Tensor,
        original_size: tuple[int, int],
        image: Any | Callable[[], Any] | None = None,
        image_format: str = "RGB",
    ) -> None:
        """Set an image by an embedding computed earlier (e.g. stored by :meth:`get_image_embedding`).

        Args:
            features: ``1 x C x h x w`` image embedding of this predictor's model.
            original_size: ``(H, W)`` of the image it was computed from.
            image: the ``H x W x 3`` image itself, or a function without arguments that reads it
                (called once, only when a prompt takes the zoom-in pass, so one-pass prompts never pay
                for reading the photo); optional: models with a zoom-in pass (``zoom_context``) use it
                to redo prompts on small objects, and without it answer in one pass.
        """
        expected = (self.model.embedding_channels, *self.model.prompt_encoder.image_embedding_size)
        if features.ndim != 4 or features.shape[0] != 1 or tuple(features.shape[1:]) != expected:
            raise PromptError(
                f"features must be 1 x {expected[0]} x {expected[1]} x {expected[2]} for this model, "
                f"got {tuple(features.shape)}."
            )
        height, width = (int(v) for v in original_size)
        if height <= 0 or width <= 0:
            raise PromptError(
                f"original_size must be (H, W) with positive sides, got {tuple(original_size)}."
            )

        def checked(pixels: Any) -> np.ndarray:
            rgb = self._rgb(pixels, image_format)
            if rgb.shape[:2] != (height, width):
                raise PromptError(
                    f"image is {rgb.shape[1]} x {rgb.shape[0]} but original_size says {width} x {height}."
                )
            return rgb

        photo = None
        if callable(image):
            photo = lambda: checked(image())  # noqa: E731 (read when the zoom-in pass first needs it)
        elif image is not None:
            photo = checked(image)
        self.reset_image()
        self.features = features.to(self.device, torch.float32).clone()
        self.original_size = (height, width)
        self.input_size = get_preprocess_shape(height, width, self.model.img_size)
        self.orig_h, self.orig_w = self.original_size
        self.input_h, self.input_w = self.input_size
        self.is_image_set = True
        if photo is not None and self.model.zoom_context > 0:
            self._image = photo

    @property
    def device(self) -> torch.device:
        return self.model.device

    # --- prediction --------------------------------------------------------------------------------

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        text: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predict masks for prompts on the current image (all coordinates in the original frame).

        Args:
            point_coords: ``N x 2`` (X, Y) pixels, or ``B x N x 2`` (one point set per box).
            point_labels: ``N`` (or ``B x N``) labels: 1 foreground, 0 background.
            box: ``4`` XYXY, or ``B x 4`` for several boxes at once.
            mask_input: ``1 x 256 x 256`` low-res logits from a previous prediction (or ``B x 1 x 256 x 256``).
            multimask_output: return 3 candidates for ambiguous prompts instead of 1.
            return_logits: return float logits instead of thresholded masks.
            text: a phrase naming the object (e.g. ``"a red triangle"``), embedded by
                ``self.text_encoder``; alone or with the other prompts (shared by all ``B`` of them).
        Returns:
            ``masks`` ``C x H x W``, ``scores`` ``C`` and ``low_res_logits`` ``C x 256 x 256``; with several
            boxes (or batched points / masks), each gains a leading ``B`` axis.
        """
        state = self._single_state("predict()")
        return self._predict_numpy(
            state, point_coords, point_labels, box, mask_input, multimask_output, return_logits, text
        )

    def predict_batch(
        self,
        point_coords: Sequence[np.ndarray | None] | None = None,
        point_labels: Sequence[np.ndarray | None] | None = None,
        box: Sequence[np.ndarray | None] | None = None,
        mask_input: Sequence[np.ndarray | None] | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        text: Sequence[str | None] | None = None,
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """:meth:`predict` for every image of :meth:`set_image_batch`; each argument is a list per image."""
        if self._batch is None:
            raise ImageNotSetError("predict_batch() needs images set with set_image_batch().")
        n = len(self._batch)
        per_image = {}
        for name, value in (
            ("point_coords", point_coords),
            ("point_labels", point_labels),
            ("box", box),
            ("mask_input", mask_input),
            ("text", text),
        ):
            if value is None:
                per_image[name] = [None] * n
            elif len(value) != n:
                raise PromptError(f"{name} must be a list with one entry per image ({n}), got {len(value)}.")
            else:
                per_image[name] = list(value)
        return [
            self._predict_numpy(
                state,
                per_image["point_coords"][i],
                per_image["point_labels"][i],
                per_image["box"][i],
                per_image["mask_input"][i],
                multimask_output,
                return_logits,
                per_image["text"][i],
            )
            for i, state in enumerate(self._batch)
        ]

    def _predict_numpy(
        self,
        state: _ImageState,
        point_coords: Any,
        point_labels: Any,
        box: Any,
        mask_input: Any,
        multimask_output: bool,
        return_logits: bool,
        text: str | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        points = check_points(point_coords, point_labels)
        boxes = check_boxes(box)
        mask = check_mask_input(mask_input, size=4 * state.features.shape[-1])
        text_t = self._embed_text(text) if text is not None else None  # 1 x D, shared by the B prompts

        # Prompt batch size B: explicit leading axes must agree; a single box/point set/mask broadcasts.
        sizes = {}
        if points is not None and points[0].ndim == 3:
            sizes["point_coords"] = points[0].shape[0]
        if boxes is not None and boxes.shape[0] > 1:
            sizes["box"] = boxes.shape[0]
        if mask is not None and mask.ndim == 4:
            sizes["mask_input"] = mask.shape[0]
        if len(set(sizes.values())) > 1:
            detail = ", ".join(f"{k}: {v}" for k, v in sizes.items())
            raise PromptError(
                f"Prompts disagree on the number of boxes/prompt sets ({detail}); give the same B."
            )
        batched = bool(sizes)
        batch = next(iter(sizes.values()), 1)

        coords_t = labels_t = box_t = mask_t = None
        if points is not None:
            coords = self.transform.apply_coords(points[0], state.original_size)
            coords_t = torch.as_tensor(coords, dtype=torch.float, device=self.device)
            labels_t = torch.as_tensor(points[1], dtype=torch.int, device=self.device)
            if coords_t.ndim == 2:
                coords_t, labels_t = coords_t[None], labels_t[None]
            coords_t, labels_t = coords_t.expand(batch, -1, -1), labels_t.expand(batch, -1)
        if boxes is not None:
            box_t = torch.as_tensor(self.transform.apply_boxes(boxes, state.original_size), dtype=torch.float)
            box_t = box_t.to(self.device).expand(batch, -1)
        if mask is not None:
            mask_t = torch.as_tensor(mask, dtype=torch.float, device=self.device)
            if mask_t.ndim == 3:
                mask_t = mask_t[None]
            mask_t = mask_t.expand(batch, -1, -1, -1)
        if text_t is not None:
            text_t = text_t.expand(batch, -1)

        if self._image is not None and text_t is None and state.features is self.features:
            masks, scores, low_res = self._predict_zooming(
                state,
                (coords_t, labels_t, box_t, mask_t),
                points,
                boxes,
                batch,
                multimask_output,
                return_logits,
            )
        else:
            masks, scores, low_res = self._predict_state(
                state, coords_t, labels_t, box_t, mask_t, multimask_output, return_logits, text_t
            )
        masks_np = masks.detach().cpu().numpy()
        scores_np = scores.detach().float().cpu().numpy()
        low_res_np = low_res.detach().float().cpu().numpy()
        if not batched:
            return masks_np[0], scores_np[0], low_res_np[0]
        return masks_np, scores_np, low_res_np

    def predict_torch(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        text_embeddings: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Batched prediction with prompts already in the model-input frame (apply ``self.transform`` first).

        Args:
            point_coords: ``B x N x 2``; point_labels: ``B x N``; boxes: ``B x 4``;
                mask_input: ``B x 1 x 256 x 256``.
            text_embeddings: ``B x D`` (or ``1 x D``, shared by the ``B`` prompts) text-image embeddings,
                e.g. ``self.text_encoder.encode_text(phrases)``; needs a model with a text path.
        Returns:
            masks ``B x C x H x W``, scores ``B x C``, low-res logits ``B x C x 256 x 256`` (torch).
        """
        state = self._single_state("predict_torch()")
        _paired(point_coords, point_labels)
        if text_embeddings is not None:
            text_embeddings = self._check_text_embeddings(text_embeddings, point_coords, boxes, mask_input)
        return self._predict_state(
            state,
            point_coords,
            point_labels,
            boxes,
            mask_input,
            multimask_output,
            return_logits,
            text_embeddings,
        )

    @_without_autograd
    def predict_low_res(
        self,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None = None,
        mask_input: torch.Tensor | None = None,
        multimask_output: bool = True,
        min_iou: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decode many prompts on the current image without upscaling their masks (one pass, no zoom).

        Prompts are in the model-input frame, as for :meth:`predict_torch`. ``min_iou``: the logits of a
        prompt none of whose candidates predict an IoU above it may be left uncomputed (NaN), which
        spares the work of prompts a filter will drop (the automatic generator's grid).

        Returns:
            low-res logits ``B x C x 256 x 256`` and predicted IoUs ``B x C`` (float32).
        """
        state = self._single_state("predict_low_res()")
        points = _paired(point_coords, point_labels)
        return self._decode(state, points, boxes, mask_input, multimask_output, None, min_iou)

    @_without_autograd
    def upscale_masks(self, low_res: torch.Tensor, threshold: float | None = None) -> torch.Tensor:
        """``B x C x 256 x 256`` low-res logits -> ``B x C x H x W`` on the current image (original frame).

        Returns logits, or bool masks where they exceed ``threshold`` (``model.mask_threshold`` is SAM's).
        """
        state = self._single_state("upscale_masks()")
        return self.model.postprocess_masks(
            low_res.float(), state.input_size, state.original_size, self.exact, threshold
        )

    @_without_autograd
    def _predict_state(
        self,
        state: _ImageState,
        point_coords: torch.Tensor | None,
        point_labels: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        return_logits: bool,
        text: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        points = (point_coords, point_labels) if point_coords is not None else None
        low_res, scores = self._decode(state, points, boxes, mask_input, multimask_output, text)
        return self._upscaled(state, low_res, scores, return_logits)

    def _decode(
        self,
        state: _ImageState,
        points: tuple[torch.Tensor, torch.Tensor] | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
        multimask_output: bool,
        text: torch.Tensor | None,
        min_iou: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Low-res logits and IoU predictions by this predictor's backend and precision."""
        image_cache = self._image_cache(state.features)
        return self._backend.decode(
            state.features, points, boxes, mask_input, multimask_output, text, min_iou, image_cache
        )

    # --- zoom-in ----------------------------------------------------------------------------------

    @_without_autograd
    def _predict_zooming(
        self,
        state: _ImageState,
        prompts: tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None],
        points: tuple[np.ndarray, np.ndarray] | None,
        boxes: np.ndarray | None,
        batch: int,
        multimask_output: bool,
        return_logits: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Predict, redoing each prompt on a small object on a zoomed-in crop (see :mod:`segany.zoom`).

        ``prompts`` are the ``B``-batched coords, labels, boxes and mask input in the input frame;
        ``points`` and ``boxes`` the same prompts in the original frame. A box gives its crop directly;
        clicks take a first low-res pass whose best mask (with the clicks) gives it. A redone prompt's
        masks and scores are the crop's, pasted back (the rest of the image is background); its low-res
        logits are moved back onto the image's grid. Only masks that are returned get upscaled.
        """
        from .zoom import crop_window, resample_low_res

        mask_input = prompts[3]
        full = state.original_size
        img_size, grid = self.model.img_size, 4 * state.features.shape[-1]
        coords = labels = None
        if points is not None:
            coords = np.array(np.broadcast_to(points[0], (batch, *points[0].shape[-2:])))
            labels = np.array(np.broadcast_to(points[1], (batch, points[1].shape[-1])))
        box_all = np.array(np.broadcast_to(boxes, (batch, 4))) if boxes is not None else None
        context = self.model.zoom_context
        windows: list[tuple[int, int, int, int] | None] = [None] * batch
        if box_all is not None:
            windows = [
                crop_window(torch.tensor(box_all[b], dtype=torch.float32), full, context, img_size)
                for b in range(batch)
            ]
        # The first pass decodes only what needs it: every click prompt (its crop comes from the first
        # mask) and the boxes too large to zoom (their answer is the first pass's).
        need = [b for b in range(batch) if box_all is None or windows[b] is None]
        first: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        if need:
            index = torch.tensor(need, device=self.device)
            coords_n, labels_n, box_n, mask_n = (None if t is None else t[index] for t in prompts)
            low_res, scores = self._decode(
                state, _paired(coords_n, labels_n), box_n, mask_n, multimask_output, None
            )
            first = {b: (low_res[i], scores[i]) for i, b in enumerate(need)}
        if box_all is None:
            assert coords is not None and labels is not None
            for b, (low_res_b, scores_b) in first.items():
                best = low_res_b[int(scores_b.argmax())] > self.model.mask_threshold
                windows[b] = crop_window(
                    _low_res_extent(best, full, coords[b], labels[b]), full, context, img_size
                )
        rows: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
        rest = [b for b in range(batch) if windows[b] is None]
        if rest:  # answered by the first pass: upscale what is returned
            low_res = torch.stack([first[b][0] for b in rest])
            scores = torch.stack([first[b][1] for b in rest])
            masks, scores, low_res = self._upscaled(state, low_res, scores, return_logits)
            if len(rest) == batch:  # nothing zooms: the first pass is the answer, as it is
                return masks, scores.float(), low_res.float()
            rows.update((b, (masks[j], scores[j].float(), low_res[j].float())) for j, b in enumerate(rest))
        todo = [b for b, window in enumerate(windows) if window is not None]
        if callable(self._image):
            self._image = self._image()  # read now, when a prompt first needs the photo
        image = self._image
        assert image is not None
        crops = [image[w[1] : w[1] + w[3], w[0] : w[0] + w[2]] for w in (windows[b] for b in todo)]
        prepared = [self._prepare(crop, self.model.image_format) for crop in crops]
        tensors = [tensor for tensor, _ in prepared]
        features = self._backend.embed(tensors)
        fill = -20.0  # background logits where a crop says nothing
        for i, b in enumerate(todo):
            left, top, width, height = windows[b]  # type: ignore[misc]
            size = (height, width)
            crop_state = _ImageState(features[i : i + 1], size, tuple(tensors[i].shape[-2:]))  # type: ignore[arg-type]
            crop_points = crop_box = crop_mask = None
            if coords is not None and labels is not None:
                shifted = self.transform.apply_coords(coords[b] - np.array([left, top]), size)
                crop_points = (
                    torch.as_tensor(shifted, dtype=torch.float, device=self.device)[None],
                    torch.as_tensor(labels[b], dtype=torch.int, device=self.device)[None],
                )
            if box_all is not None:
                shifted = box_all[b] - np.array([left, top, left, top])
                crop_box = torch.as_tensor(self.transform.apply_boxes(shifted, size), dtype=torch.float)
                crop_box = crop_box.to(self.device).reshape(1, 4)
            if mask_input is not None:
                crop_mask = resample_low_res(
                    mask_input[b : b + 1],
                    ((0, 0), full, img_size, grid),
                    ((left, top), size, img_size, grid),
                    fill,
                )
            crop_masks, crop_scores, crop_low = self._predict_state(
                crop_state,
                *(crop_points or (None, None)),
                crop_box,
                crop_mask,
                multimask_output,
                return_logits,
            )
            shape = (crop_masks.shape[1], *full)
            pasted = crop_masks.new_full(shape, fill) if return_logits else crop_masks.new_zeros(shape)
            pasted[:, top : top + height, left : left + width] = crop_masks[0]
            moved = resample_low_res(
                crop_low, ((left, top), size, img_size, grid), ((0, 0), full, img_size, grid), fill
            )[0]
            rows[b] = (pasted, crop_scores[0].float(), moved)
        return _stacked(rows, batch)

    def _upscaled(
        self, state: _ImageState, low_res: torch.Tensor, scores: torch.Tensor, return_logits: bool
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Decoded ``B x C`` low-res logits and scores -> (masks or logits in the original frame, scores,
        low-res logits)."""
        threshold = None if return_logits else self.model.mask_threshold
        masks = self.model.postprocess_masks(
            low_res, state.input_size, state.original_size, self.exact, threshold
        )
        return masks, scores, low_res

    # --- text --------------------------------------------------------------------------------------

    def _embed_text(self, text: str) -> torch.Tensor:
        """A phrase -> its ``1 x D`` embedding by ``self.text_encoder``, checked against the model."""
        if not isinstance(text, str) or not text.strip():
            raise PromptError(f"text must be a non-empty phrase such as 'a red triangle', got {text!r}.")
        if self.text_encoder is None:
            raise TextEncoderError(
                "A text prompt needs a text encoder; pass text_encoder=segany.text.load_text_encoder(PATH) "
                "to SamPredictor or set predictor.text_encoder."
            )
        from .text.load import check_pair

        check_pair(self.model, self.text_encoder)
        return self.text_encoder.encode_text([text]).to(self.device, torch.float32)

    def _check_text_embeddings(
        self,
        text: torch.Tensor,
        point_coords: torch.Tensor | None,
        boxes: torch.Tensor | None,
        mask_input: torch.Tensor | None,
    ) -> torch.Tensor:
        """``B x D`` or ``1 x D`` text embeddings -> ``B x D`` (B of the other prompts, else their own)."""
        from .text.load import text_width

        width = text_width(self.model)
        if text.ndim != 2 or text.shape[1] != width:
            raise PromptError(f"text_embeddings must be B x {width} for this model, got {tuple(text.shape)}.")
        batch = next((t.shape[0] for t in (point_coords, boxes, mask_input) if t is not None), None)
        if batch is None or text.shape[0] == batch:
            return text
        if text.shape[0] == 1:
            return text.expand(batch, -1)
        raise PromptError(
            f"text_embeddings has {text.shape[0]} rows but the other prompts have B = {batch}; give 1 or {batch}."
        )


def _paired(
    coords: torch.Tensor | None, labels: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Input-frame points as the decoder takes them: ``(coords, labels)``, or None; both or neither."""
    if (coords is None) != (labels is None):
        raise PromptError("point_coords and point_labels must be given together.")
    return (coords, labels) if coords is not None and labels is not None else None


def _stacked(
    rows: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]], batch: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-prompt ``(masks, scores, low-res logits)`` of prompts ``0..batch-1`` -> the three ``B``-batched."""
    masks, scores, low_res = (torch.stack([rows[b][k] for b in range(batch)]) for k in range(3))
    return masks, scores, low_res


def _low_res_extent(
    mask: torch.Tensor, image_size: tuple[int, int], coords: np.ndarray, labels: np.ndarray
) -> torch.Tensor:
    """``4`` XYXY box (original pixels) around a ``L x L`` bool low-res mask and the positive clicks.

    The mask lies on SAM's low-res grid over the padded input square, which spans the image's longest
    side (``image_size`` is ``(H, W)``), so a cell spans ``max(H, W) / L`` pixels.
    """
    cell = max(image_size) / mask.shape[-1]
    positive = torch.as_tensor(coords[labels == 1], dtype=torch.float32)
    rows, cols = torch.nonzero(mask.cpu(), as_tuple=True)
    xs = torch.cat([cols.float() * cell, (cols.float() + 1) * cell, positive[:, 0]])
    ys = torch.cat([rows.float() * cell, (rows.float() + 1) * cell, positive[:, 1]])
    if len(xs) == 0:
        return torch.zeros(4)
    height, width = image_size
    return torch.stack([xs.min(), ys.min(), xs.max().clamp(max=width), ys.max().clamp(max=height)])
