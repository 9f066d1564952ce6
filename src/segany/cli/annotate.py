"""``segany annotate``: the annotation app (serve), and moving its annotations out (export) and in (import).

Three forms, told apart by the first word (``serve`` may be left out)::

    segany annotate [serve] IMAGES_DIR [--db annotations.sqlite] [--host 127.0.0.1] [--port 8000]
                    [--token SECRET] [--model NAME] [--checkpoint PATH] ...
    segany annotate export --db FILE --format sa1b|coco|png|yolo --out DIR [--images IMAGES_DIR]
    segany annotate import --db FILE --images IMAGES_DIR FILES...

The database defaults to ``annotations.sqlite`` in the current folder (embeddings are cached next to
it, in ``.segany-cache/``). A folder literally named ``export`` or ``import`` is served as ``./export``.
"""

from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from .common import add_model_args

FORMATS = ("sa1b", "coco", "png", "yolo")
DEFAULT_DB = "annotations.sqlite"

_USAGE = """segany annotate [serve] IMAGES_DIR [options]
       segany annotate export --db FILE --format {sa1b,coco,png,yolo} --out DIR [--images IMAGES_DIR]
       segany annotate import --db FILE --images IMAGES_DIR FILES..."""


def _add_serve_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB, help=f"annotation database (default: ./{DEFAULT_DB})")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    parser.add_argument(
        "--allow-host",
        action="append",
        default=[],
        metavar="NAME",
        help="a host name browsers may use to reach the server, besides its IP addresses and localhost "
        "(repeatable; e.g. the machine's name on a network)",
    )
    parser.add_argument(
        "--token", default=None, help="require this secret on every request (Bearer header or ?token=)"
    )
    parser.add_argument(
        "--max-body-mb", type=float, default=50.0, help="refuse request bodies larger than this (default: 50)"
    )
    add_model_args(parser)


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "annotate",
        help="annotation app: click masks in a browser; export or import annotations",
        usage=_USAGE,
        description="Serve the annotation app over a folder of images (the default form), or export the "
        "accepted annotations of a database, or import SA-1B / COCO files into it as proposals. "
        "See `segany annotate export --help` and `segany annotate import --help`.",
    )
    _add_serve_options(parser)
    parser.add_argument(
        "words",
        nargs=argparse.REMAINDER,
        metavar="[serve|export|import] ...",
        help="the form and its arguments",
    )
    parser.set_defaults(run=run)


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="segany annotate [serve]", description="Serve the annotation app.")
    parser.add_argument("images_dir", metavar="IMAGES_DIR", help="folder of images (searched recursively)")
    _add_serve_options(parser)
    return parser


def _export_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segany annotate export",
        description="Write every accepted annotation with the writers of `segany auto`, plus labels.json.",
    )
    parser.add_argument("--db", required=True, help="annotation database")
    parser.add_argument("--format", required=True, choices=FORMATS, help="output format")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--images", default=None, help="also copy the annotated images to OUT/images/")
    return parser


def _import_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="segany annotate import",
        description="Store the masks of SA-1B or COCO files as proposals to review in the app.",
    )
    parser.add_argument("--db", required=True, help="annotation database (created if missing)")
    parser.add_argument(
        "--images", required=True, help="the images folder the files' file_name are relative to"
    )
    parser.add_argument(
        "files", nargs="+", metavar="FILES", help="SA-1B per-image JSON or COCO instances JSON"
    )
    return parser


def run(args: argparse.Namespace) -> int:
    words = list(args.words)
    if words and words[0] == "export":
        return _export(_export_parser().parse_args(words[1:]))
    if words and words[0] == "import":
        return _import(_import_parser().parse_args(words[1:]))
    if words and words[0] == "serve":
        words = words[1:]
    # Options given before IMAGES_DIR are already in args; argparse keeps them (it sets only missing defaults).
    return _serve(_serve_parser().parse_args(words, namespace=args))


def _app_modules():
    from ..errors import SegAnyError

    try:
        import uvicorn

        from ..app import server
    except ImportError as exc:
        raise SegAnyError(
            f"The annotation app needs FastAPI and uvicorn ({exc}); install them with pip install 'segany[app]'."
        ) from exc
    return server, uvicorn


def _serve(args: argparse.Namespace) -> int:
    from ..errors import SegAnyError
    from .common import load_model

    server, uvicorn = _app_modules()
    if not Path(args.images_dir).is_dir():
        raise SegAnyError(f"Images folder {args.images_dir} does not exist; give a folder of images.")
    if args.max_body_mb <= 0:
        raise SegAnyError("--max-body-mb must be positive.")
    _check_port_free(args.host, args.port)
    if not _is_loopback(args.host) and not args.token:
        print(
            f"segany annotate: warning: listening on {args.host} without --token; anyone who can reach this "
            "machine can read and change the annotations.",
            file=sys.stderr,
        )
    model = load_model(args)
    app = server.create_app(
        args.images_dir,
        args.db,
        model_factory=lambda: model,
        token=args.token,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024),
        allowed_hosts=[args.host, *args.allow_host],
    )
    total = len(app.state.segany.storage.image_paths())
    query = f"?token={args.token}" if args.token else ""
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(
        f"segany annotate: {total} images in {args.images_dir}, annotations in {args.db}; "
        f"open http://{host}:{args.port}/{query}",
        file=sys.stderr,
    )
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port another program listens on, before the database is created or the model loaded."""
    import socket

    from ..errors import SegAnyError

    if not 0 < port < 65536:
        raise SegAnyError(f"--port must be between 1 and 65535, got {port}.")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise SegAnyError(f"Cannot listen on {host!r}: {exc.strerror}; give an address with --host.") from exc
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            raise SegAnyError(
                f"Cannot listen on {host} port {port} ({exc.strerror}); another program may use it, "
                "choose another with --port."
            ) from exc


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _export(args: argparse.Namespace) -> int:
    from ..app.transfer import export_annotations
    from ..errors import SegAnyError
    from ..store.storage import Storage

    if not Path(args.db).is_file():
        raise SegAnyError(f"Database {args.db} not found; give the --db the app was served with.")
    images = Path(args.images) if args.images else None
    summary = export_annotations(Storage(args.db), Path(args.out), args.format, images)
    copied = f", {summary.copied} images copied" if images else ""
    print(
        f"segany annotate export: {summary.masks} masks of {summary.images} images written as {args.format} "
        f"to {args.out}{copied}",
        file=sys.stderr,
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    from ..app.transfer import import_files
    from ..errors import SegAnyError
    from ..store.storage import Storage

    images = Path(args.images)
    if not images.is_dir():
        raise SegAnyError(f"Images folder {images} does not exist; give the folder the files refer to.")
    summary = import_files(Storage(args.db), images, [Path(f) for f in args.files])
    for line in summary.skipped:
        print(f"segany annotate import: skipped {line}", file=sys.stderr)
    print(
        f"segany annotate import: {summary.annotations} proposals for {summary.images} images stored in "
        f"{args.db}, {len(summary.skipped)} skipped",
        file=sys.stderr,
    )
    return 1 if summary.skipped and not summary.annotations else 0
