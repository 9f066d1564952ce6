"""``segany engine label``: local and Ray runs give the same masks; killed runs and dead actors lose nothing
and label nothing twice; a broken image is reported, not fatal."""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from segany.automatic.options import GeneratorConfig
from segany.cli import main
from segany.engine.outputs import ERRORS, MANIFEST, RUNS, read_jsonl
from segany.engine.pipeline import LabelJob, Labeller, LabelResult, ModelSpec
from segany.engine.sources import ImageItem, read_manifest
from segany.formats.sa1b import read_sa1b
from segany.training.synthetic import make_scene
from support import FIXTURE_PATH

GOOD = ("a.png", "b.png", "c.jpg", "sub/d.png", "sub/e.png")
BROKEN = "broken.png"
# Small and permissive, so each image is quick and yields masks.
FLAGS = ("--points-per-side", "6", "--pred-iou-thresh", "0.5", "--stability-score-thresh", "0.5")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("images")
    for i, name in enumerate(GOOD):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(make_scene(np.random.default_rng(i), 72, 96).image).save(path, quality=95)
    (root / BROKEN).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    return root


def _label(images: Path, out: Path, *extra: str) -> int:
    return main(
        [
            "engine",
            "label",
            "--input",
            str(images),
            "--out",
            str(out),
            "--checkpoint",
            str(FIXTURE_PATH),
            *FLAGS,
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def reference(images, tmp_path_factory) -> Path:
    """The single-process run, one torch thread (as each Ray actor), so both compute the same numbers."""
    out = tmp_path_factory.mktemp("local")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert _label(images, out) == 1  # the broken image fails the exit status, not the run
    finally:
        torch.set_num_threads(threads)
    return out


def _masks(folder: Path) -> dict[str, list[tuple]]:
    """Per image: each mask's RLE, box and area, and its scores rounded (summed in another order, the
    last float digits may differ)."""
    found = {}
    for name in GOOD:
        info, anns = read_sa1b(folder / Path(name).with_suffix(".json"))
        assert info["file_name"] == name
        found[name] = [
            (
                a["segmentation"]["counts"],
                tuple(a["bbox"]),
                a["area"],
                round(a["predicted_iou"], 4),
                round(a["stability_score"], 4),
            )
            for a in anns
        ]
    return found


def _lines_per_image(folder: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in read_jsonl(folder / MANIFEST):
        counts[line["name"]] = counts.get(line["name"], 0) + 1
    return counts


def test_local_run_writes_one_json_per_image_and_reports_the_broken_one(images, reference) -> None:
    lines = {line["name"]: line for line in read_jsonl(reference / MANIFEST)}
    assert sorted(lines) == sorted([*GOOD, BROKEN])
    assert _lines_per_image(reference) == dict.fromkeys([*GOOD, BROKEN], 1)
    for name in GOOD:
        line = lines[name]
        assert line["status"] == "ok" and line["masks"] > 0 and line["seconds"] > 0
        assert (line["height"], line["width"]) == (72, 96)
        assert line["model"]["checkpoint"] == str(FIXTURE_PATH.resolve())
        assert line["options"]["points_per_side"] == 6
        _, anns = read_sa1b(reference / Path(name).with_suffix(".json"))
        assert len(anns) == line["masks"]
    assert lines[BROKEN]["status"] == "error" and BROKEN in lines[BROKEN]["error"]
    errors = read_jsonl(reference / ERRORS)
    assert [e["name"] for e in errors] == [BROKEN]
    assert not (reference / "broken.json").exists()
    run = read_jsonl(reference / RUNS)[-1]
    assert (run["runner"], run["labelled"], run["failed"], run["completed"]) == ("local", 5, 1, True)


def test_rerun_skips_what_is_done_and_retries_what_failed(images, reference, tmp_path) -> None:
    out = tmp_path / "again"
    shutil.copytree(reference, out)
    stamps = {name: (out / Path(name).with_suffix(".json")).stat().st_mtime_ns for name in GOOD}
    assert _label(images, out) == 1
    assert {name: (out / Path(name).with_suffix(".json")).stat().st_mtime_ns for name in GOOD} == stamps
    run = read_jsonl(out / RUNS)[-1]
    assert (run["skipped"], run["labelled"], run["failed"]) == (5, 0, 1)
    assert _lines_per_image(out) == dict.fromkeys([*GOOD, BROKEN], 1)


def test_manifest_of_paths(images, tmp_path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text(f"# two images\n{images / 'a.png'}\n\nrel/x.png\n")
    pairs = read_manifest(listing)
    assert pairs == [
        (str(images / "a.png"), str(images / "a.png").lstrip("/")),
        (str(tmp_path / "rel/x.png"), "rel/x.png"),
    ]


@pytest.mark.slow
def test_killed_run_then_rerun_labels_every_image_exactly_once(images, reference, tmp_path) -> None:
    out = tmp_path / "killed"
    command = [
        sys.executable, "-c",
        "import sys; from segany.cli import main; code = main(sys.argv[1:]); "
        "print('RAY-IMPORTED' if 'ray' in sys.modules else 'NO-RAY'); sys.exit(code)",
        "engine", "label", "--input", str(images), "--out", str(out), "--checkpoint", str(FIXTURE_PATH), *FLAGS,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        if len(read_jsonl(out / MANIFEST)) >= 2:
            break
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    written = len(read_jsonl(out / MANIFEST))
    assert 2 <= written < len(GOOD) + 1, "the run was to be killed part-way"

    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 1, finished.stderr
    assert "NO-RAY" in finished.stdout  # the local pipeline never imports Ray
    assert _lines_per_image(out) == dict.fromkeys([*GOOD, BROKEN], 1)
    assert not list(out.rglob("*.tmp"))
    assert _masks(out) == _masks(reference)
    runs = read_jsonl(out / RUNS)
    assert len(runs) == 1 and runs[0]["skipped"] == written - (BROKEN in _names(out, written))


def _names(out: Path, count: int) -> set[str]:
    return {line["name"] for line in read_jsonl(out / MANIFEST)[:count]}


def test_ray_runner_without_ray_says_how_to_install_it(monkeypatch, tmp_path) -> None:
    from segany.engine.ray_runner import RayOptions, run_ray
    from segany.errors import SegAnyError

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    job = LabelJob(out_dir=str(tmp_path), model=ModelSpec(str(FIXTURE_PATH)))
    with pytest.raises(SegAnyError, match=r"pip install segany\[scale\]"):
        run_ray([ImageItem(0, "a.png", "a.png")], job, print, RayOptions())


# --- Ray ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install segany[scale])")
    pytest.importorskip("ray.data", reason="Ray Data is not installed (pip install segany[scale])")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    # The crashing labeller below lives in this test module, which Ray's workers cannot import.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_ray_run_gives_the_same_masks_as_the_local_run(images, reference, ray_cluster, tmp_path) -> None:
    out = tmp_path / "ray"
    assert _label(images, out, "--ray", "--actors", "2", "--batch-size", "2") == 1
    assert _masks(out) == _masks(reference)
    assert _lines_per_image(out) == dict.fromkeys([*GOOD, BROKEN], 1)
    assert [e["name"] for e in read_jsonl(out / ERRORS)] == [BROKEN]
    run = read_jsonl(out / RUNS)[-1]
    assert (run["runner"], run["actors"], run["labelled"], run["failed"]) == ("ray", 2, 5, 1)
    assert ray_cluster.is_initialized()  # a cluster the caller started is left running


class CrashOnce(Labeller):
    """Kills its own process the first time it reaches ``victim`` (the marker file remembers)."""

    def __init__(self, job: LabelJob, marker: str, victim: str) -> None:
        super().__init__(job)
        self.marker, self.victim = Path(marker), victim

    def label(self, item: ImageItem) -> LabelResult:
        if item.name == self.victim and not self.marker.exists():
            self.marker.touch()
            os._exit(1)
        return super().label(item)


@pytest.mark.slow
def test_a_dead_actor_is_restarted_and_its_images_are_labelled_once(
    images, reference, ray_cluster, tmp_path
) -> None:
    from segany.cli.engine import input_items
    from segany.engine.ray_runner import RayOptions, run_ray

    out, marker = tmp_path / "crash", tmp_path / "crashed"
    job = LabelJob(
        out_dir=str(out),
        model=ModelSpec(str(FIXTURE_PATH)),
        generator=GeneratorConfig(points_per_side=6, pred_iou_thresh=0.5, stability_score_thresh=0.5),
    )
    results: list[LabelResult] = []
    labeller = functools.partial(CrashOnce, marker=str(marker), victim="c.jpg")
    run_ray(input_items(str(images)), job, results.append, RayOptions(actors=2, batch_size=2), labeller)
    assert marker.exists(), "the actor was to die once"
    assert sorted(r.name for r in results) == sorted([*GOOD, BROKEN])
    assert _masks(out) == _masks(reference)
    assert not list(out.rglob("*.tmp"))
    assert json.loads((out / "c.json").read_text())["image"]["file_name"] == "c.jpg"


class CrashAlways(Labeller):
    """Kills its own process every time it reaches ``victim``."""

    def __init__(self, job: LabelJob, victim: str) -> None:
        super().__init__(job)
        self.victim = victim

    def label(self, item: ImageItem) -> LabelResult:
        if item.name == self.victim:
            os._exit(1)
        return super().label(item)


@pytest.mark.slow
def test_an_image_that_always_kills_its_actor_fails_the_run_in_one_sentence(
    images, ray_cluster, tmp_path
) -> None:
    from segany.cli.engine import input_items
    from segany.engine.ray_runner import RayOptions, run_ray
    from segany.errors import SegAnyError

    out = tmp_path / "doomed"
    job = LabelJob(
        out_dir=str(out),
        model=ModelSpec(str(FIXTURE_PATH)),
        generator=GeneratorConfig(points_per_side=6, pred_iou_thresh=0.5, stability_score_thresh=0.5),
    )
    labeller = functools.partial(CrashAlways, victim="c.jpg")
    with pytest.raises(SegAnyError, match="died 3 times"):
        run_ray(input_items(str(images)), job, lambda result: None, RayOptions(actors=1, batch_size=2), labeller)
    assert not list(out.rglob("*.tmp"))


def test_images_added_later_get_new_ids(tmp_path) -> None:
    from segany.engine.labelling import plan
    from segany.engine.outputs import LabelLog
    from segany.engine.sources import items_from

    job = LabelJob(out_dir=str(tmp_path), model=ModelSpec(str(FIXTURE_PATH)))
    log = LabelLog(tmp_path)
    for item in items_from([("x/b.png", "b.png"), ("x/d.png", "d.png")]):
        log.record(LabelResult(item.image_id, item.name, item.source, "error", error="E"), job)
    later = items_from([(f"x/{n}", n) for n in ("a.png", "b.png", "c.png", "d.png")])
    assert [(i.name, i.image_id) for i in plan(later, log)] == [
        ("a.png", 2),
        ("b.png", 0),
        ("c.png", 3),
        ("d.png", 1),
    ]
