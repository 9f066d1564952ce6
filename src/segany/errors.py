"""Errors segany raises for bad input. Each message is one sentence saying what was wrong and what to do."""

from __future__ import annotations


class SegAnyError(Exception):
    """Base class of every error segany raises on purpose (the CLI prints these without a traceback)."""


class CheckpointError(SegAnyError):
    """A checkpoint file is missing, unreadable, not SAM, or does not fit the requested model."""


class ImageError(SegAnyError, ValueError):
    """An image file or array cannot be used (missing, unreadable, wrong shape or dtype)."""


class PromptError(SegAnyError, ValueError):
    """A prompt (points, labels, box, mask input) has the wrong shape or values; names the argument."""


class ImageNotSetError(SegAnyError, RuntimeError, ValueError):
    """A prediction was asked for before an image was set (a RuntimeError, as in the official API)."""


class DownloadError(SegAnyError):
    """A checkpoint download failed or its checksum did not match."""


class DatasetError(SegAnyError, ValueError):
    """A dataset (its spec, annotation file, folder or an image in it) cannot be used; names the file."""


class TextEncoderError(SegAnyError):
    """A text-image encoder (CLIP weights, segany's small encoder) is missing, unreadable or does not
    fit the SAM model it is paired with; says where to get the weights."""
