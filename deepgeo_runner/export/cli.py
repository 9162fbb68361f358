"""``deepgeo-export RUN_DIR|CKPT [-o DIR] [--formats onnx,pt2,mlm] [--tile N]``: a trained model for use elsewhere.

Writes ``model.onnx`` (onnxruntime, QGIS Deepness), ``model.pt2`` (``torch.export``) and ``mlm.json`` (a STAC
Item with the Machine Learning Model extension) into ``RUN_DIR/export/`` (or ``-o DIR``). The exported
graphs take the raster's raw bands and compute the indices and the training normalization themselves.
"""

from __future__ import annotations

import argparse
import sys

from deepgeo_runner.core.errors import DeepGeoError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="deepgeo-export",
        description="Export a trained deepgeo model: model.onnx (onnxruntime, QGIS Deepness), model.pt2 "
                    "(torch.export) and mlm.json (STAC MLM item). The graphs take raw bands.")
    parser.add_argument("source", help="a finished run directory, or a .ckpt written by deepgeo")
    parser.add_argument("-o", "--out", default=None, help="output folder (default: RUN_DIR/export)")
    parser.add_argument("--formats", default="onnx,pt2,mlm", help="comma-separated: onnx, pt2, mlm (default: all)")
    parser.add_argument("--tile", type=int, default=None, help="tile side in pixels (default: the chip size)")
    parser.add_argument("--own-model", default=None, metavar="MODULE.CLASS",
                        help="your own network class, when the checkpoint names it (model._target_ of your config): "
                             "without it, only deepgeo's models are rebuilt from a checkpoint")
    args = parser.parse_args(argv)
    from deepgeo_runner.export.run import export_model

    try:
        exported = export_model(args.source, args.out, args.formats, args.tile, trusted_target=args.own_model)
    except DeepGeoError as exc:
        print(f"deepgeo-export: {exc}", file=sys.stderr)
        return 2
    for fmt, path in exported.files.items():
        print(f"{fmt}: {path}")
    return 0


def console() -> None:
    sys.exit(main())


if __name__ == "__main__":
    console()
