"""``segany export-onnx``: write the decoder (official ONNX interface) and the image encoder as ONNX."""

from __future__ import annotations

import argparse

from .common import add_model_args, load_model, make_out_dir


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
    parser.add_argument(
        "--quantize",
        action="store_true",
        help="also write int8 versions (dynamic quantisation) and print their measured accuracy cost",
    )
    parser.add_argument(
        "--check-image", default=None, help="image used to measure the int8 cost (default: synthetic)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import SegAnyError

    try:
        from ..export.onnx_export import export_decoder, export_encoder
        from ..export.quantize import measure_cost, quantize
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise SegAnyError("ONNX export needs the onnx extra: pip install 'segany[onnx]'.") from exc
    from ..export.onnx_export import check_opset

    check_opset(args.opset)  # before the model loads
    args.device = "cpu"
    args.precision = "float32"
    model = load_model(args)
    out = make_out_dir(args.out)
    written = [
        export_decoder(model, out / "decoder.onnx", return_single_mask=not args.multimask, opset=args.opset)
    ]
    if not args.no_encoder:
        written.append(export_encoder(model, out / "encoder.onnx", opset=args.opset))
    if args.quantize:
        written += [quantize(path) for path in list(written)]
    for path in written:
        print(path)
    if args.quantize:
        import json

        cost = measure_cost(out, _check_input(model, args.check_image), model.img_size)
        print(json.dumps({"int8_accuracy_cost": {k: round(v, 5) for k, v in cost.items()}}))
    return 0


def _check_input(model, image_path: str | None):
    """A preprocessed ``1 x 3 x S x S`` array: the given image, or a smooth synthetic one."""
    import numpy as np
    import torch

    from ..images import load_image
    from ..transforms import ResizeLongestSide

    if image_path is not None:
        image = load_image(image_path)
    else:
        yy, xx = np.mgrid[0:480, 0:640]
        image = np.stack(
            [xx * 255 / 640, yy * 255 / 480, 128 + 100 * np.sin(xx / 37.0) * np.cos(yy / 23.0)], -1
        )
        image = image.clip(0, 255).astype(np.uint8)
    resized = ResizeLongestSide(model.img_size).apply_image(image)
    tensor = torch.as_tensor(resized).permute(2, 0, 1).float()
    return model.preprocess(tensor)[None].numpy()
