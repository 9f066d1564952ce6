"""The Ray runner: a pool of model actors fed by Ray Data; Ray is imported only when it runs.

The images to do become a Ray Data dataset of small rows (``image_id``, ``name``, ``source``), one block
per batch; ``map_batches`` sends the blocks to ``actors`` actors, each holding one :class:`Labeller`
(model loaded once per actor), which read, label and write their images and return one JSON result
per image. The driver iterates the results and alone writes the manifest.

Faults: an actor that dies (killed, out of memory, a crashed node) is restarted and its batch retried
(Ray Data's defaults for actor pools: no limit on either, so an image that kills its worker every time
would stall the run; ``--max-pixels`` refuses the usual culprit, huge images). A retried batch
rewrites the JSONs its first attempt wrote, atomically and identically, and Ray Data yields each
batch's results once, so no image is lost or gets two manifest lines. Outputs are written by the
actors: on a multi-machine cluster ``--out``, the checkpoint and local image paths must be readable at
the same paths on every node (a shared filesystem), or the images given as URIs.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .pipeline import LabelJob, Labeller, LabelResult
from .sources import ImageItem
from .watchdog import child_pids, guard_children

# Restarts of a crashed labelling actor (and retries of its batch) before the run fails.
_MAX_RESTARTS = 2


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run.

    ``address``: ``auto`` (the cluster in ``RAY_ADDRESS`` or one already running on this machine, else a
    new local one), ``local`` (always a new local one) or ``HOST:PORT``; when Ray is already initialised
    in this process, that cluster is used. A cluster started here is shut down at the end.
    """

    address: str = "auto"
    actors: int = 1
    batch_size: int = 1
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0

    def __post_init__(self) -> None:
        if self.actors < 1 or self.batch_size < 1:
            raise ValueError(
                f"actors and batch_size must be at least 1, got {self.actors} and {self.batch_size}."
            )
        if self.cpus_per_actor <= 0 or self.gpus_per_actor < 0:
            raise ValueError("cpus_per_actor must be positive and gpus_per_actor 0 or more.")


class LabelActor:
    """The callable class Ray Data runs in each actor: one labeller, batches of rows in, results out."""

    def __init__(self, job: LabelJob, labeller: Callable[[LabelJob], Labeller], threads: int) -> None:
        import torch

        # Ray sets OMP_NUM_THREADS from the actor's CPUs; set torch's pool too, whatever was inherited.
        torch.set_num_threads(threads)
        self.labeller = labeller(job)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        results = []
        for image_id, name, source in zip(batch["image_id"], batch["name"], batch["source"], strict=True):
            result = self.labeller.label(ImageItem(int(image_id), str(name), str(source)))
            results.append(json.dumps(result.to_dict()))
        return {"result": results}


def run_ray(
    items: Sequence[ImageItem],
    job: LabelJob,
    on_result: Callable[[LabelResult], None],
    options: RayOptions,
    labeller: Callable[[LabelJob], Labeller] = Labeller,
) -> None:
    """Label ``items`` on Ray (see the module docstring), handing each result to ``on_result``."""
    if not items:
        return
    try:
        import ray
        import ray.data
    except ImportError as exc:
        from ..errors import SegAnyError

        raise SegAnyError("--ray needs Ray; install it with `pip install segany[scale]`.") from exc

    started_here = not ray.is_initialized()
    watchdog = None
    if started_here:
        address = None if options.address == "auto" else options.address
        before = set(child_pids())
        ray.init(address=address, include_dashboard=False, logging_level="WARNING")
        # A local cluster started here runs in new child processes: they must not outlive this driver.
        watchdog = guard_children([pid for pid in child_pids() if pid not in before])
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the driver shows its own progress over the results
        rows = [asdict(item) for item in items]
        dataset = ray.data.from_items(rows, override_num_blocks=math.ceil(len(rows) / options.batch_size))
        labelled = dataset.map_batches(
            LabelActor,
            fn_constructor_kwargs={
                "job": job,
                "labeller": labeller,
                "threads": max(1, int(options.cpus_per_actor)),
            },
            batch_size=options.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=options.actors),
            num_cpus=options.cpus_per_actor,
            num_gpus=options.gpus_per_actor or None,
            # Ray Data restarts a dead actor and retries its batch forever by default, so an image that
            # kills the process (out of memory, a crashing decoder) would stall the run; a batch that
            # keeps failing fails the run instead, after the images already written.
            max_restarts=_MAX_RESTARTS,
            max_task_retries=_MAX_RESTARTS,
        )
        try:
            for row in labelled.iter_rows():
                on_result(LabelResult.from_dict(json.loads(row["result"])))
        except ray.exceptions.RayError as exc:
            from ..errors import SegAnyError

            raise SegAnyError(
                f"Labelling on Ray failed: a labelling actor died {_MAX_RESTARTS + 1} times on the same images "
                f"(out of memory, or a crash in native code: {type(exc).__name__}); the images already "
                "labelled are kept and a rerun labels the rest."
            ) from exc
    finally:
        if started_here:
            ray.shutdown()
        if watchdog is not None:
            watchdog.stand_down()
