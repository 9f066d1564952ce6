"""The package's layers point down only: each part imports parts listed before it in ``ORDER``, never
after (no loops, no reaching across). Checked on the source, by parsing every import statement."""

from __future__ import annotations

import ast
from pathlib import Path

import segany

PACKAGE = Path(segany.__file__).resolve().parent

# Bottom to top. A part is a top-level module or subpackage of segany; "" is the package itself.
ORDER = (
    # conventions and utilities every layer may use
    "errors", "version", "files", "config", "variants", "prompts", "runtime", "images", "transforms", "progress",
    # the model, its files and formats
    "zoom", "modeling", "checkpoints", "download", "formats", "visualize", "build",
    # what the predictor stands on: text-image encoders, exported graphs (ONNX Runtime backend)
    "text", "export", "backends",
    # the public API, then what builds on it
    "predictor", "automatic", "training",
    # the annotation store, then the programs over it
    "store", "engine", "app", "cli", "__main__", "",
)  # fmt: skip


def _part(module: str) -> str:
    """``segany.app.server`` -> ``app``; ``segany`` -> ``""``."""
    return module.split(".")[1] if "." in module else ""


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(imported segany module, line)`` for every import statement in ``path``."""
    module = ".".join(("segany", *path.relative_to(PACKAGE).with_suffix("").parts))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    package = package.removesuffix(".__init__")
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            if target == "segany" or target.startswith("segany."):
                names = [f"{target}.{a.name}" for a in node.names] if target == "segany" else [target]
                found += [(name, node.lineno) for name in names]
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.startswith("segany")]
    return found


def test_every_part_is_placed() -> None:
    parts = {_part(".".join(("segany", *p.relative_to(PACKAGE).with_suffix("").parts))) for p in PACKAGE.rglob("*.py")}
    parts = {"" if part == "__init__" else part for part in parts}
    assert parts <= set(ORDER), f"place these in ORDER: {sorted(parts - set(ORDER))}"


def test_imports_point_down() -> None:
    rank = {part: i for i, part in enumerate(ORDER)}
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _part(".".join(("segany", *path.relative_to(PACKAGE).with_suffix("").parts)))
        source = "" if source == "__init__" else source
        for target, line in _imports(path):
            part = _part(target)
            if part != source and rank.get(part, -1) >= rank[source]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({source or 'segany'}) imports {target}")
    assert not wrong, "imports pointing up or across:\n" + "\n".join(wrong)
