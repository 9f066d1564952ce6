"""The single-process runner: one labeller in this process, images in order; Ray is never imported."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .pipeline import LabelJob, Labeller, LabelResult
from .sources import ImageItem


def run_local(
    items: Sequence[ImageItem],
    job: LabelJob,
    on_result: Callable[[LabelResult], None],
    labeller: Callable[[LabelJob], Labeller] = Labeller,
) -> None:
    """Label ``items`` here, handing each result to ``on_result`` as soon as it is written.

    ``labeller`` builds the labeller from the job (a :class:`Labeller` unless a test swaps it); the model
    is loaded only when there is something to do.
    """
    if not items:
        return
    worker = labeller(job)
    for item in items:
        on_result(worker.label(item))
