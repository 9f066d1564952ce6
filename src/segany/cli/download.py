"""``segany download``: fetch an official checkpoint into the cache."""

from __future__ import annotations

import argparse

from ..variants import OFFICIAL_WEIGHTS


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "download",
        help="download an official SAM checkpoint",
        description="Download an official checkpoint (with resume and SHA-256 check) into the segany cache.",
    )
    parser.add_argument("model", choices=sorted(OFFICIAL_WEIGHTS), help="which official checkpoint")
    parser.add_argument("--dir", default=None, help="folder to save into (default: the segany cache)")
    parser.add_argument("--url", default=None, help="download from this URL instead (a mirror)")
    parser.add_argument("--sha256", default=None, help="expected SHA-256 of the file at --url")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..download import download_checkpoint

    path = download_checkpoint(
        args.model, dest_dir=args.dir, url=args.url, sha256=args.sha256, progress=not args.quiet
    )
    print(path)
    return 0
