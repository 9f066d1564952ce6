"""Progress bars of long jobs (eval, auto over folders, engine, training): one definition for all.

On a terminal the bar redraws in place; when stderr is a file or pipe (CI, ``2> log``) it is still
written, but only for a job that runs longer than 30 seconds and then at most every 30 seconds, so a
log shows a long job is alive without filling up.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

LOG_INTERVAL_S = 30.0


def progress_bar(iterable: Iterable[Any] | None = None, **options: Any) -> Any:
    """A ``tqdm`` bar on stderr (``options`` are tqdm's: ``total``, ``desc``, ``unit``, ``initial``...)."""
    from tqdm import tqdm

    terminal = sys.stderr.isatty()
    options.setdefault("mininterval", 0.1 if terminal else LOG_INTERVAL_S)
    if not terminal:  # a short job leaves a log alone: nothing is written before the first interval
        options.setdefault("delay", LOG_INTERVAL_S)
    return tqdm(iterable, file=sys.stderr, dynamic_ncols=terminal, **options)
