"""``segany engine``: the data engine at dataset scale.

    segany engine label --input DIR|MANIFEST --out DIR [--ray [auto|local|HOST:PORT]] [--actors N]
                        [--batch-size N] [model options] [generator options]
    segany engine stats DIR [--plot FILE.png] [--json FILE.json]
    segany engine round --annotations DB_OR_DIR... --base CHECKPOINT --out ROUND_DIR [--images DIR]
                        [--config TRAIN.toml] [--ledger FILE]

``label`` writes one SA-1B JSON per image plus manifest.jsonl, errors.jsonl and runs.jsonl (see
:mod:`segany.engine.outputs`); ``stats`` summarises such a folder; ``round`` fine-tunes on accepted
annotations and automatic masks and keeps the result only if it measures better (see
:mod:`segany.engine.rounds`). Without ``--ray`` labelling runs in this process and Ray is not imported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..automatic.options import GeneratorConfig
from ..images import DEFAULT_MAX_PIXELS
from .common import add_model_args, model_spec
from .config_flags import add_config_flags, config_from_args


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "engine",
        help="data engine: label datasets (locally or on Ray), their stats, fine-tuning rounds",
        description="Dataset-scale automatic labelling, statistics of its output, and model-in-the-loop rounds.",
    )
    actions = parser.add_subparsers(dest="engine_command", metavar="ACTION", required=True)
    _add_label(actions)
    _add_stats(actions)
    _add_round(actions)


# --- label --------------------------------------------------------------------------------------------


def _add_label(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "label",
        help="segment everything in a folder or manifest of images, resumably, here or on Ray",
        description=(
            "Run the automatic mask generator over every image of --input and write OUT/<name>.json "
            "(SA-1B) per image, with manifest.jsonl, errors.jsonl and runs.jsonl. Re-running skips images "
            "already done and retries failed ones."
        ),
    )
    parser.add_argument(
        "--input",
        required=True,
        metavar="DIR|MANIFEST",
        help="a folder (searched recursively) or a text file with one image path or URI per line",
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument(
        "--ray",
        nargs="?",
        const="auto",
        default=None,
        metavar="auto|local|HOST:PORT",
        help="run on Ray (`--ray` alone: auto, the running cluster or a new local one); needs segany[scale]",
    )
    parser.add_argument("--actors", type=int, default=1, help="model actors on Ray (default: 1)")
    parser.add_argument("--batch-size", type=int, default=1, help="images per Ray task (default: 1)")
    parser.add_argument(
        "--cpus-per-actor", type=float, default=1.0, help="CPUs each actor reserves (default: 1)"
    )
    parser.add_argument(
        "--gpus-per-actor", type=float, default=0.0, help="GPUs each actor reserves (default: 0)"
    )
    parser.add_argument("--overwrite", action="store_true", help="redo images already done")
    parser.add_argument(
        "--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse images with more pixels than this"
    )
    add_model_args(parser)
    add_config_flags(parser, GeneratorConfig, exclude=("output_mode",))
    parser.set_defaults(run=run_label)


def run_label(args: argparse.Namespace) -> int:
    from ..engine.labelling import label_images
    from ..engine.pipeline import LabelJob
    from ..engine.ray_runner import RayOptions
    from ..errors import SegAnyError

    try:
        generator = config_from_args(GeneratorConfig, args, output_mode="coco_rle")
        job = LabelJob(
            out_dir=str(Path(args.out).resolve()),
            model=model_spec(args),
            generator=generator,
            max_pixels=args.max_pixels,
        )
        ray = (
            None
            if args.ray is None
            else RayOptions(
                address=args.ray,
                actors=args.actors,
                batch_size=args.batch_size,
                cpus_per_actor=args.cpus_per_actor,
                gpus_per_actor=args.gpus_per_actor,
            )
        )
    except ValueError as exc:
        raise SegAnyError(f"Bad option: {exc}") from exc
    if ray is not None and (args.device or "").startswith("cuda") and not args.gpus_per_actor:
        raise SegAnyError("--device cuda on Ray needs --gpus-per-actor (e.g. 1, or 0.5 to share a GPU).")
    items = input_items(args.input)
    summary = label_images(items, job, ray=ray, overwrite=args.overwrite, progress=True)
    print(f"segany engine label: {summary.text(Path(job.out_dir))}", file=sys.stderr)
    return 1 if summary.failed else 0


def input_items(text: str) -> list:
    """The images of ``--input``: a folder's images (as ``segany auto`` finds them) or a manifest's."""
    from ..engine.sources import find_images, items_from, read_manifest
    from ..errors import SegAnyError
    from ..images import IMAGE_SUFFIXES

    path = Path(text)
    if path.is_dir():
        pairs = [(str(source.resolve()), name) for source, name in find_images([text])]
    elif path.is_file():
        pairs = read_manifest(path)
    else:
        raise SegAnyError(f"Input {text} not found; give a folder of images or a manifest file.")
    if not pairs:
        raise SegAnyError(f"No images ({', '.join(IMAGE_SUFFIXES)}) found in {text}.")
    return items_from(pairs)


# --- stats --------------------------------------------------------------------------------------------


def _add_stats(actions: argparse._SubParsersAction) -> None:
    parser = actions.add_parser(
        "stats",
        help="statistics of a labelled folder, as text and a PNG plot",
        description=(
            "Images, masks per image, mask size, predicted IoU and stability distributions and each run's "
            "throughput, printed and drawn to DIR/stats.png."
        ),
    )
    parser.add_argument("folder", metavar="DIR", help="an output folder of `segany engine label`")
    parser.add_argument(
        "--plot", default=None, metavar="FILE.png", help="where to draw (default: DIR/stats.png)"
    )
    parser.add_argument("--no-plot", action="store_true", help="print only")
    parser.add_argument("--json", default=None, metavar="FILE.json", help="also write the figures as JSON")
    parser.set_defaults(run=run_stats)


def run_stats(args: argparse.Namespace) -> int:
    from ..engine.stats import collect_stats
    from ..formats.base import atomic_write_json

    stats = collect_stats(Path(args.folder))
    print(stats.text())
    if not args.no_plot:
        from ..engine.plot import save_stats_plot

        path = save_stats_plot(stats, Path(args.plot or Path(args.folder) / "stats.png"))
        print(f"plot: {path}")
    if args.json:
        atomic_write_json(Path(args.json), stats.to_dict())
    return 0


# --- round --------------------------------------------------------------------------------------------


def _add_round(actions: argparse._SubParsersAction) -> None:
    from ..engine.round_config import METRICS
    from ..training.eval_config import EvalConfig

    parser = actions.add_parser(
        "round",
        help="fine-tune on accumulated annotations; keep the model only if it measures better",
        description=(
            "One model-in-the-loop round: hold images out by name, evaluate --base on them, fine-tune it on "
            "the rest of the annotations and automatic masks, evaluate again, and append the round to the "
            "ledger. current.json (beside the ledger) moves to the new checkpoint only if it improved."
        ),
    )
    parser.add_argument(
        "--annotations",
        nargs="+",
        required=True,
        metavar="DB_OR_DIR",
        help="annotation databases (.sqlite/.db), `engine label` output folders, SA-1B or COCO datasets",
    )
    parser.add_argument(
        "--base", default=None, help="checkpoint to start from (default: the ledger's current checkpoint)"
    )
    parser.add_argument("--out", required=True, metavar="ROUND_DIR", help="this round's folder")
    parser.add_argument("--images", default=None, help="the folder the databases' images were annotated in")
    parser.add_argument(
        "--config", default=None, metavar="TRAIN.toml", help="TrainConfig settings over the round's defaults"
    )
    parser.add_argument("--ledger", default=None, help="ledger file (default: ROUND_DIR/../ledger.jsonl)")
    parser.add_argument(
        "--holdout", type=float, default=0.2, help="share of images held out by name hash (default: 0.2)"
    )
    parser.add_argument(
        "--metric",
        choices=METRICS,
        default="box_miou",
        help="what must improve (default: box_miou)",
    )
    parser.add_argument(
        "--min-gain", type=float, default=0.0, help="the metric must rise by more than this (default: 0)"
    )
    parser.add_argument("--steps", type=int, default=None, help="training steps (over the defaults and TOML)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda when available)")
    add_config_flags(parser, EvalConfig)
    parser.set_defaults(run=run_round, baselines=False, clicks=3)


def run_round(args: argparse.Namespace) -> int:
    from ..engine.round_config import RoundOptions, metric_of
    from ..engine.rounds import read_settings, run_round
    from ..errors import SegAnyError
    from ..training.eval_config import EvalConfig
    from ..training.train_config import TrainConfigError
    from .train import progress_hook

    try:
        overrides = read_settings(Path(args.config)) if args.config else {}
        if args.steps is not None:
            overrides["steps"] = args.steps
        if args.device is not None:
            overrides["device"] = args.device
        options = RoundOptions(
            holdout=args.holdout,
            metric=args.metric,
            min_gain=args.min_gain,
            evaluation=config_from_args(EvalConfig, args),
        )
    except TrainConfigError:
        raise
    except ValueError as exc:
        raise SegAnyError(f"Bad option: {exc}") from exc
    line = run_round(
        args.annotations,
        Path(args.out),
        base=args.base,
        images_dir=Path(args.images) if args.images else None,
        ledger_path=Path(args.ledger) if args.ledger else None,
        train_overrides=overrides,
        options=options,
        hooks=[progress_hook()],
        progress=True,
    )
    verdict = "improved: the new checkpoint is current" if line["improved"] else "no improvement: kept"
    print(
        f"Round {line['round']}: {line['metric']} {metric_of(line['before'], line['metric']):.4f} -> "
        f"{metric_of(line['after'], line['metric']):.4f} on {line['data']['held_out_images']} held-out images; "
        f"{verdict} {line['current']}"
    )
    return 0
