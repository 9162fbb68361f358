"""Whole-scene prediction on the CPU: the checkpoint with torch against its exported model.onnx with
onnxruntime (and model.pt2 with torch.export), side by side in one run.

A raw 6-band reflectance scene (``--size`` px square, float32, nodata corner) and a checkpoint of the chosen
network (random weights: the speed does not depend on them) are made once in ``--workdir``; the model is
exported with :func:`deepgeo_runner.export.run.export_model`. Each case then runs
:func:`deepgeo_runner.stages.apply.apply_checkpoint` on the scene in its own child process (so that
peak RSS is that case's alone): the ``.ckpt`` prepares the scene (indices, normalization, a prepared stack
on disk) and predicts it; the ``.onnx``/``.pt2`` read the raw bands window by window and prepare them
inside the graph. Same window, overlap, batch size and thread count for all.

    python benchmarks/export_predict.py                        # FCN-8s (width 8), 2048² px, 4 threads
    python benchmarks/export_predict.py --model unet18 --size 1024 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

BANDS = ["blue", "green", "red", "nir", "swir1", "swir2"]
MODELS = {"fcn8s": {"_target_": "deepgeo_runner.ml.models.FCN8s", "width": 8},
          "unet18": {"_target_": "deepgeo_runner.ml.models.smp_model", "arch": "Unet", "encoder": "resnet18",
                     "encoder_weights": None}}


def make_scene(path: Path, side: int) -> Path:
    import rasterio
    from affine import Affine

    if path.exists():
        return path
    rng = np.random.default_rng(0)
    profile = dict(driver="GTiff", width=side, height=side, count=len(BANDS), dtype="float32", nodata=-9999.0,
                   crs="EPSG:32722", transform=Affine(30, 0, 600000, 0, -30, 9600000), tiled=True, compress="deflate")
    with rasterio.open(path, "w", **profile) as dst:
        for r0 in range(0, side, 256):
            h = min(256, side - r0)
            yy, xx = np.mgrid[r0:r0 + h, 0:side] / 97.0
            field = (np.sin(xx) + np.cos(yy * 1.3)) * 0.05
            block = np.stack([0.05 + field * (i + 1) / 6 + 0.01 * rng.standard_normal((h, side)) for i in range(6)])
            block = np.round(block.astype(np.float32), 4)
            if r0 == 0:
                block[:, :64, :64] = -9999.0
            dst.write(block, window=((r0, r0 + h), (0, side)))
    return path


def make_checkpoint(work: Path, scene: Path, model: str, chip: int) -> Path:
    import torch

    from deepgeo_runner.geo.footprint import image_nodata, raster_footprint
    from deepgeo_runner.ml.checkpoint import plain_metadata
    from deepgeo_runner.ml.model_card import ModelCard
    from deepgeo_runner.ml.models.registry import build_from_description
    from deepgeo_runner.stages.prepare import PrepareOptions, prepare_scene

    ckpt = work / f"{model}.ckpt"
    if ckpt.exists():
        return ckpt
    prepared = prepare_scene(scene, work / "fit_prep", PrepareOptions(BANDS, ["ndvi"], "standard", progress=False))
    meta = {"features": list(prepared.feature_names), "band_names": BANDS, "indices": ["ndvi"],
            "stats": prepared.stats.to_dict(), "class_names": ["forest", "deforestation", "water"],
            "class_ids": [1, 2, 3], "class_colors": ["#1b7837", "#d6604d", "#2166ac"], "chip_size": chip,
            "dates": [], "nodata_rule": "gdal", "model": MODELS[model],
            "model_inputs": {"in_channels": prepared.n_features},
            "scene": {**raster_footprint(scene), "image_nodata": image_nodata(scene)}}
    torch.manual_seed(0)
    net = build_from_description(MODELS[model], meta["model_inputs"], 3, "benchmark", None)
    card = plain_metadata(ModelCard.from_dict(plain_metadata(meta)).to_dict())
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}, "deepgeo": card}, ckpt)
    return ckpt


def run_case(source: str, scene: str, out: str, batch: int, threads: int) -> None:
    """One case in this (child) process; prints a JSON line."""
    import torch

    torch.set_num_threads(threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)
    from deepgeo_runner.stages.apply import apply_checkpoint

    start = time.perf_counter()
    applied = apply_checkpoint(source, scene, out, overlap=0.5, batch_size=batch, device="cpu", progress=False)
    seconds = time.perf_counter() - start
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB (Linux: KiB)
    print(json.dumps({"seconds": seconds, "rss_mib": rss, "prediction": str(applied.prediction)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="fcn8s")
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--chip", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--formats", default="onnx,pt2")
    parser.add_argument("--workdir", default="/tmp/deepgeo-bench-export")
    parser.add_argument("--case", nargs=3, metavar=("SOURCE", "SCENE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(*args.case, args.batch, args.threads)
        return
    import rasterio

    from deepgeo_runner.export.run import export_model

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    scene = make_scene(work / f"scene_{args.size}.tif", args.size)
    ckpt = make_checkpoint(work, scene, args.model, args.chip)
    start = time.perf_counter()
    files = export_model(ckpt, work / f"export_{args.model}", args.formats + ",mlm").files
    export_s = time.perf_counter() - start
    cases = [("torch (.ckpt)", ckpt)] + [(f"{'onnxruntime' if f == 'onnx' else 'torch.export'} (.{f})", files[f])
                                          for f in args.formats.split(",")]
    rows, maps = [], {}
    for name, source in cases:
        out = work / f"out_{Path(source).suffix[1:]}"
        proc = subprocess.run([sys.executable, __file__, "--case", str(source), str(scene), str(out),
                               "--batch", str(args.batch), "--threads", str(args.threads)],
                              capture_output=True, text=True, check=False)
        if proc.returncode:
            raise SystemExit(f"{name} failed:\n{proc.stderr[-3000:]}")
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        with rasterio.open(result["prediction"]) as src:
            maps[name] = src.read(1)
        rows.append((name, result["seconds"], args.size ** 2 / 1e6 / result["seconds"], result["rss_mib"]))
    reference = maps[cases[0][0]]
    print(f"\n{args.model}, {args.size}² px, {len(BANDS)} raw bands + NDVI, chip {args.chip}, batch {args.batch}, "
          f"{args.threads} threads; export {export_s:.1f} s")
    print("| case | seconds | Mpx/s | peak RSS MiB | same class as .ckpt |\n|---|---|---|---|---|")
    for (name, seconds, mpx, rss), (_, m) in zip(rows, maps.items(), strict=True):
        print(f"| {name} | {seconds:.1f} | {mpx:.2f} | {rss:.0f} | {100 * float((m == reference).mean()):.4f} % |")


if __name__ == "__main__":
    main()
