"""``aesthetics-jax export MODEL --format onnx|saved_model --out PATH``.

MODEL is a bundle (directory or .tar.gz, verified first) or a training workdir (its latest
checkpoint, or ``--step``). ONNX options: ``--input-dtype float32|uint8``, ``--layout NHWC|NCHW``,
``--opset`` (>= 18). See ``export/onnx.py`` and ``export/saved_model.py`` for the contracts.
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="aesthetics-jax export", description="Export a model to ONNX or TF SavedModel.")
    parser.add_argument("model", help="bundle directory/.tar.gz or training workdir")
    parser.add_argument("--format", choices=("onnx", "saved_model"), required=True)
    parser.add_argument("--out", required=True, help="output .onnx file or SavedModel directory")
    parser.add_argument("--step", default="latest", help="workdir checkpoint: latest, best or a number")
    parser.add_argument("--input-dtype", choices=("float32", "uint8"), default="float32", help="ONNX input type")
    parser.add_argument("--layout", choices=("NHWC", "NCHW"), default="NHWC", help="ONNX input layout")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (>= 18)")
    args = parser.parse_args(argv)
    from aesthetics_jax.export import bundle as bundle_lib

    try:
        bundle = bundle_lib.load_model(args.model, args.step)
        if args.format == "onnx":
            from aesthetics_jax.export import onnx as onnx_export

            kwargs = {"input_dtype": args.input_dtype, "layout": args.layout}
            if args.opset is not None:
                kwargs["opset"] = args.opset
            onnx_export.export_bundle(bundle, args.out, **kwargs)
        else:
            from aesthetics_jax.export import saved_model

            saved_model.export_bundle(bundle, args.out)
    except (bundle_lib.BundleError, FileNotFoundError, ValueError) as e:
        print(f"aesthetics-jax export: {e}", file=sys.stderr)
        return 1
    print(f"exported {args.model} -> {args.out} ({args.format})")
    return 0
