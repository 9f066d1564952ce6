"""``segany export-onnx``: write the decoder (official ONNX interface) and the image encoder as ONNX."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_model_args, load_model


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "export-onnx",
        help="export the decoder and encoder to ONNX",
        description="Write OUT/decoder.onnx (official SAM ONNX inputs and outputs) and OUT/encoder.onnx.",
    )
    parser.add_argument("--out", required=True, help="output folder")
    add_model_args(parser)
    parser.add_argument(
        "--multimask", action="store_true", help="decoder returns all candidate masks instead of the best one"
    )
    parser.add_argument("--no-encoder", action="store_true", help="write only the decoder")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import SegAnyError

    try:
        from ..export.onnx_export import export_decoder, export_encoder
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise SegAnyError("ONNX export needs the onnx extra: pip install 'segany[onnx]'.") from exc
    args.device = "cpu"
    args.precision = "float32"
    model = load_model(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = [
        export_decoder(model, out / "decoder.onnx", return_single_mask=not args.multimask, opset=args.opset)
    ]
    if not args.no_encoder:
        written.append(export_encoder(model, out / "encoder.onnx", opset=args.opset))
    for path in written:
        print(path)
    return 0
