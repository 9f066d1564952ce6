"""A COCO split cut down to its first N photos, for measuring how the recipe scales with data.

    python scripts/coco_subset.py ../shared/data/coco_extra/train 40 runs/probe/coco_extra40

writes ``OUT/annotations/instances_<split>.json`` with the first ``N`` photos by image id and their
annotations, and ``OUT/<split>`` as a link to the photos' folder, so ``OUT/<split>`` is a dataset spec
(``segany.training.datasets.open_dataset``) that reads only those photos. Nothing is copied but the JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def write_subset(split: Path, count: int, out: Path) -> tuple[int, int]:
    """Write the first ``count`` photos of the COCO ``split`` folder under ``out``: (photos, annotations).

    Raises:
        ValueError: ``count`` is below 1, or ``split`` has no ``../annotations/instances_<split>.json``.
    """
    if count < 1:
        raise ValueError(f"The subset needs at least 1 photo, got {count}.")
    source = split.parent / "annotations" / f"instances_{split.name}.json"
    if not source.is_file():
        raise ValueError(f"{split} is not a COCO split: {source} is missing.")
    coco = json.loads(source.read_text())
    images = sorted(coco["images"], key=lambda image: image["id"])[:count]
    kept = {image["id"] for image in images}
    annotations = [a for a in coco["annotations"] if a["image_id"] in kept]
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    subset = {**coco, "images": images, "annotations": annotations}
    (out / "annotations" / f"instances_{split.name}.json").write_text(json.dumps(subset))
    link = out / split.name
    if not link.exists():
        link.symlink_to(split.resolve(), target_is_directory=True)
    return len(images), len(annotations)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("split", type=Path, help="a COCO image folder <root>/<split>")
    parser.add_argument("count", type=int, help="how many photos to keep (the first by image id)")
    parser.add_argument("out", type=Path, help="the subset's root folder")
    args = parser.parse_args()
    try:
        photos, annotations = write_subset(args.split, args.count, args.out)
    except (ValueError, OSError, json.JSONDecodeError, KeyError) as exc:
        sys.exit(f"error: {exc}")
    print(f"{args.out / args.split.name}: {photos} photos, {annotations} annotations")


if __name__ == "__main__":
    main()
