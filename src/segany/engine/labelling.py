"""A labelling run: which images are left to do, a runner to do them, and the bookkeeping around it.

:func:`label_images` is the one batch-labelling loop, of ``segany engine label`` and ``segany auto``:
it locks the output folder, drops what a killed run left half-done, skips the images already done (their
last manifest line says ``ok`` and their masks exist; failed images are tried again), runs the rest here
or on Ray, appends a manifest line per image as it finishes (after its text scores, for a job with a
phrase), then lets the writer finish the folder (COCO's ``instances.json``), tidies the manifest and
records the run in ``runs.jsonl``.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .local import run_local
from .outputs import LabelLog, TextScores, run_line, utc_now
from .pipeline import OK, LabelJob, Labeller, LabelResult
from .ray_runner import RayOptions, run_ray
from .sources import ImageItem


@dataclass(frozen=True)
class LabelSummary:
    """What a run did: ``images`` in the input, ``skipped`` (already done), ``labelled``, ``failed``
    (names in ``failed_names``), ``masks`` written, wall ``seconds`` and ``images_per_minute``."""

    images: int
    skipped: int
    labelled: int
    failed: int
    masks: int
    seconds: float
    images_per_minute: float | None
    failed_names: tuple[str, ...] = ()

    def text(self, out_dir: Path) -> str:
        rate = f", {self.images_per_minute:.1f} images/min" if self.images_per_minute else ""
        per_image = f", {self.masks / self.labelled:.1f} per image" if self.labelled else ""
        return (
            f"{self.images} images: {self.labelled} written ({self.masks} masks{per_image}), {self.skipped} already "
            f"done, {self.failed} failed; {self.seconds:.1f} s{rate}; output in {out_dir}"
        )


def plan(items: Sequence[ImageItem], log: LabelLog, overwrite: bool = False) -> list[ImageItem]:
    """The items still to do: all with ``overwrite``, else those not done (see module docstring).

    An image the folder already knows keeps its ``image_id``; images new to it are numbered after the
    highest id there, so ids stay unique in the folder when images are added between runs.
    """
    entries = log.entries()
    known = {name: int(entry["image_id"]) for name, entry in entries.items() if "image_id" in entry}
    next_id = max(known.values(), default=-1) + 1
    numbered = []
    for item in items:
        if item.name in known:
            item = dataclasses.replace(item, image_id=known[item.name])
        elif known:
            item, next_id = dataclasses.replace(item, image_id=next_id), next_id + 1
        numbered.append(item)
    if overwrite:
        return numbered
    return [item for item in numbered if not log.is_done(entries.get(item.name))]


def label_images(
    items: Sequence[ImageItem],
    job: LabelJob,
    ray: RayOptions | None = None,
    overwrite: bool = False,
    progress: bool = False,
    labeller: Callable[[LabelJob], Labeller] = Labeller,
) -> LabelSummary:
    """Label ``items`` into ``job.out_dir``, in this process (``ray`` None) or on Ray.

    Args:
        overwrite: redo images already done.
        progress: show a progress bar on stderr.
        labeller: what each worker builds from the job (tests swap in one that fails on purpose).
    """
    out_dir = Path(job.out_dir)
    writer = job.writer()
    log = LabelLog(out_dir, writer.done_path)
    with log.lock():
        log.repair()
        text_scores = TextScores(out_dir, job.text.phrase, overwrite) if job.text is not None else None
        todo = plan(items, log, overwrite)
        results: list[LabelResult] = []
        first: list[float] = []  # seconds into the run when the first result came back
        bar = _progress(len(todo)) if progress and todo else None

        def on_result(result: LabelResult) -> None:
            if not first:
                first.append(time.perf_counter() - start)
            if text_scores is not None and result.status == OK and result.text_scores is not None:
                text_scores.add(result.name, result.text_scores)
            log.record(result, job)
            results.append(result)
            if bar is not None:
                bar.update(1)
                if result.status != OK:
                    bar.write(f"segany: skipped {result.name}: {result.error}", file=sys.stderr)

        started, start = utc_now(), time.perf_counter()
        completed = False
        try:
            if ray is None:
                run_local(todo, job, on_result, labeller)
            else:
                run_ray(todo, job, on_result, ray, labeller)
            writer.finish(out_dir)
            completed = True
        finally:
            if bar is not None:
                bar.close()
            seconds = time.perf_counter() - start
            log.compact()
            if todo:
                line = run_line(
                    started=started,
                    seconds=seconds,
                    first_seconds=first[0] if first else None,
                    runner="local" if ray is None else "ray",
                    actors=1 if ray is None else ray.actors,
                    images=len(items),
                    skipped=len(items) - len(todo),
                    results=results,
                    job=job,
                )
                log.add_run({**line, "completed": completed})
    failed = tuple(r.name for r in results if r.status != OK)
    return LabelSummary(
        images=len(items),
        skipped=len(items) - len(todo),
        labelled=len(results) - len(failed),
        failed=len(failed),
        masks=sum(r.masks for r in results),
        seconds=seconds,
        images_per_minute=60 * len(results) / seconds if results and seconds > 0 else None,
        failed_names=failed,
    )


def _progress(total: int):
    from ..progress import progress_bar

    return progress_bar(total=total, desc="images", unit="img")
