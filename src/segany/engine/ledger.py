"""The ledger of model-in-the-loop rounds, and the pointer to the current checkpoint.

``ledger.jsonl`` (default: beside the round folders, ``ROUND_DIR/../ledger.jsonl``) holds one line per
finished round (see :mod:`segany.engine.rounds` for its fields); it is the record of truth. Next to it,
``current.json`` (``{"checkpoint", "as_of_round"}``) names the checkpoint to use now: the last round that
improved, else the base of the first round. It is rewritten (atomically) from the ledger, so a round
killed between the two files leaves a pointer that the next round puts right.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import SegAnyError
from ..formats.base import atomic_write_json
from .outputs import read_jsonl

LEDGER = "ledger.jsonl"
CURRENT = "current.json"


class Ledger:
    """The ledger file ``path`` and the ``current.json`` beside it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.pointer = self.path.parent / CURRENT

    def rounds(self) -> list[dict[str, Any]]:
        return read_jsonl(self.path)

    def next_round(self) -> int:
        return 1 + max((int(line["round"]) for line in self.rounds()), default=0)

    def round_of(self, out_dir: Path) -> dict[str, Any] | None:
        """The ledger line of the round written to ``out_dir``, if that round finished."""
        target = str(Path(out_dir).resolve())
        return next((line for line in self.rounds() if line.get("out") == target), None)

    def current(self) -> str | None:
        """The current checkpoint: the ledger's last ``current``, else the pointer file's, else None."""
        rounds = self.rounds()
        if rounds:
            return rounds[-1]["current"]
        if self.pointer.exists():
            try:
                return json.loads(self.pointer.read_text(encoding="utf-8"))["checkpoint"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise SegAnyError(f"Cannot read {self.pointer} ({exc}); remove it or fix it.") from exc
        return None

    def append(self, line: dict[str, Any]) -> None:
        """Add a finished round, then point ``current.json`` at its ``current`` checkpoint."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, separators=(",", ":")) + "\n")
        self.sync_pointer()

    def sync_pointer(self) -> None:
        """Rewrite ``current.json`` from the ledger's last line (nothing to do for an empty ledger)."""
        rounds = self.rounds()
        if rounds:
            atomic_write_json(
                self.pointer, {"checkpoint": rounds[-1]["current"], "as_of_round": rounds[-1]["round"]}
            )
