"""Whole-scene prediction: wall time, Mpx/s and peak RSS against the bare model forward.

Two prepared-like scenes (8 float32 bands, tiled deflate GeoTIFF, written in strips): a
Landsat-size one (``--size``, default 7,800 px square) and one four times larger (twice the
side). Each is predicted by :func:`deepgeo_runner.ml.predict.predict_scene` in its own child
process (so that peak RSS is that case's alone), and, in another child, the bare model
forward runs over the same number of windows at the same batch size (no I/O, no blending, no
writing). One table: whole vs bare time, their ratio (goal on CPU ≤ 1.25), peak RSS and the
ratio of peak RSS large / small (goal ≤ 1.2).

    python benchmarks/predict_scene.py                                  # CUDA if present: U-Net/ResNet-34
    python benchmarks/predict_scene.py --model unet18 --size 1024       # a CPU run at a size it can finish
    python benchmarks/predict_scene.py --model pointwise                # full size, I/O + blending only

Scenes are cached in ``--workdir`` (default /tmp/deepgeo-bench-predict) between runs.
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

MODELS = ("unet34", "unet18", "unet18_d3", "fcn8s", "pointwise")


def build_model(name: str, bands: int, classes: int):
    import torch

    from deepgeo_runner.ml.models import FCN8s, smp_model

    torch.manual_seed(0)
    if name == "unet34":
        return smp_model(bands, classes, arch="Unet", encoder="resnet34", encoder_weights=None)
    if name == "unet18":
        return smp_model(bands, classes, arch="Unet", encoder="resnet18", encoder_weights=None)
    if name == "unet18_d3":
        return smp_model(bands, classes, arch="Unet", encoder="resnet18", encoder_weights=None,
                         encoder_depth=3, decoder_channels=(64, 32, 16))
    if name == "fcn8s":
        return FCN8s(bands, classes, width=8)
    if name == "pointwise":  # a 1×1 convolution: measures everything but the network
        return torch.nn.Conv2d(bands, classes, 1)
    raise SystemExit(f"unknown --model {name}; choose from {MODELS}")


def make_scene(path: Path, side: int, bands: int, seed: int = 0) -> Path:
    """A prepared-like stack: smooth standardized fields, quantized so that deflate works as on
    real data, a nodata corner; written 256 rows at a time (bounded memory)."""
    import rasterio
    from affine import Affine

    if path.exists():
        return path
    tmp = path.with_name(path.name + ".tmp")
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0.002, 0.02, size=(bands, 2))
    phase = rng.uniform(0, 6.28, size=(bands, 2))
    cols = np.arange(side, dtype=np.float32)
    profile = {"driver": "GTiff", "width": side, "height": side, "count": bands, "dtype": "float32",
               "crs": "EPSG:32722", "transform": Affine(30, 0, 600_000, 0, -30, 9_600_000),
               "nodata": -9999.0, "tiled": True, "blockxsize": 256, "blockysize": 256,
               "compress": "deflate", "BIGTIFF": "YES"}
    with rasterio.open(tmp, "w", **profile) as dst:
        for r0 in range(0, side, 256):
            r1 = min(r0 + 256, side)
            rows = np.arange(r0, r1, dtype=np.float32)[:, None]
            strip = np.empty((bands, r1 - r0, side), dtype=np.float32)
            for b in range(bands):
                field = (np.sin(rows * freq[b, 0] + phase[b, 0])
                         + np.cos(cols[None] * freq[b, 1] + phase[b, 1]))
                strip[b] = np.round(field * 64) / 64
            if r0 == 0:
                strip[:, :64, :64] = -9999.0
            dst.write(strip, window=rasterio.windows.Window(0, r0, side, r1 - r0))
    os.replace(tmp, path)
    return path


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child_predict(args) -> dict:
    import torch

    from deepgeo_runner.core.step_clock import StepClock
    from deepgeo_runner.ml.predict import ClassLegend, OutputFormats, WindowSettings, predict_scene

    net = build_model(args.model, args.bands, args.classes)
    clock = StepClock()
    out = Path(args.workdir) / f"prediction-{args.side}.tif"
    inside = {"t": 0.0, "t0": 0.0}  # time spent in the network's forward within the whole run

    def pre(module, inputs):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        inside["t0"] = time.perf_counter()

    def post(module, inputs, output):
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        inside["t"] += time.perf_counter() - inside["t0"]

    net.register_forward_pre_hook(pre)
    net.register_forward_hook(post)
    start = time.perf_counter()
    k = args.classes
    colors = (["#1b7837", "#d6604d", "#2166ac"] + ["#888888"] * k)[:k]
    predict_scene(net, args.scene, out, WindowSettings(args.window, args.overlap, args.batch, amp=args.amp),
                  ClassLegend(list(range(1, k + 1)), [f"c{i}" for i in range(k)], colors), device=args.device,
                  progress=False, outputs=OutputFormats(cog=not args.no_cog), clock=clock)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    wall = time.perf_counter() - start
    import hashlib

    import rasterio

    with rasterio.open(out) as src:  # the class map's pixels, and the file's bytes (a change must say so)
        pixels = hashlib.sha256(src.read(1).tobytes()).hexdigest()[:16]
    file_hash = hashlib.sha256(out.read_bytes()).hexdigest()[:16]
    return {"wall_s": wall, "forward_inside_s": inside["t"], "peak_rss_mb": peak_rss_mb(),
            "classes_sha256": pixels, "file_sha256": file_hash, "steps": clock.seconds, "load": os.getloadavg()}


def child_bare(args) -> dict:
    """The forward pass alone over as many windows as the scene has, same batch size."""
    import torch

    from deepgeo_runner.geo.stitch import stride_for, window_origins

    stride = stride_for(args.window, args.overlap)
    n = len(window_origins(args.side, args.window, stride)) ** 2
    device = torch.device(args.device)
    net = build_model(args.model, args.bands, args.classes).eval().to(device)
    x = torch.randn(args.batch, args.bands, args.window, args.window)
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.amp):
        net(x[:2].to(device))  # warm-up, as predict_scene's first batch also pays it
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        done = 0
        while done < n:
            b = min(args.batch, n - done)
            out = net(x[:b].to(device)).float()
            out.cpu() if device.type == "cuda" else None
            done += b
        if device.type == "cuda":
            torch.cuda.synchronize()
    return {"wall_s": time.perf_counter() - start, "windows": n, "peak_rss_mb": peak_rss_mb()}


def run_child(args, kind: str, side: int, scene: Path | None) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--side", str(side), "--model", args.model,
           "--device", args.device, "--window", str(args.window), "--overlap", str(args.overlap),
           "--batch", str(args.batch), "--bands", str(args.bands), "--classes", str(args.classes),
           "--workdir", str(args.workdir)] + (["--amp"] if args.amp else []) + (["--no-cog"] if args.no_cog else [])
    if scene is not None:
        cmd += ["--scene", str(scene)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {side}: child failed\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=7800, help="side of the smaller scene (px)")
    parser.add_argument("--model", choices=MODELS, default=None,
                        help="default: unet34 on CUDA, unet18 on CPU")
    parser.add_argument("--device", default=None)
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--bands", type=int, default=8)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--amp", action="store_true", help="bfloat16 autocast (GPUs)")
    parser.add_argument("--no-cog", action="store_true",
                        help="plain tiled GeoTIFF (predict.cog=false); by default the COG rewrite is timed too")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/deepgeo-bench-predict"))
    parser.add_argument("--expect", nargs="*", default=(), metavar="SHA",
                        help="class-map pixel hashes (sha256, 16 hex) the two scenes must give, in order: a change "
                             "to the pipeline asserts that its maps are unchanged")
    parser.add_argument("--child", choices=("predict", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--side", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.model is None:
        args.model = "unet34" if args.device.startswith("cuda") else "unet18"
    if args.child:
        result = child_predict(args) if args.child == "predict" else child_bare(args)
        print(json.dumps(result))
        return

    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, side in (("Landsat-size", args.size), ("4x larger", 2 * args.size)):
        t0 = time.perf_counter()
        scene = make_scene(args.workdir / f"scene-{side}-{args.bands}b.tif", side, args.bands)
        print(f"scene {side}² ready ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        whole = run_child(args, "predict", side, scene)
        bare = run_child(args, "bare", side, None)
        mpx = side * side / 1e6
        rows.append({"case": label, "side": side, "mpx": mpx, "whole": whole, "bare": bare})
        print(f"{label}: whole {whole['wall_s']:.1f} s, bare {bare['wall_s']:.1f} s", file=sys.stderr)
    print(f"\nmodel={args.model} device={args.device} window={args.window} overlap={args.overlap} "
          f"batch={args.batch} bands={args.bands} classes={args.classes} amp={args.amp}")
    print("| scene | px | windows | whole (s) | Mpx/s | bare forward (s) | whole / bare "
          "| forward inside whole (s) | whole / forward inside | peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['case']} | {r['side']}² ({r['mpx']:.1f} Mpx) | {r['bare']['windows']} "
              f"| {r['whole']['wall_s']:.1f} | {r['mpx'] / r['whole']['wall_s']:.2f} "
              f"| {r['bare']['wall_s']:.1f} | {r['whole']['wall_s'] / r['bare']['wall_s']:.2f} "
              f"| {r['whole']['forward_inside_s']:.1f} "
              f"| {r['whole']['wall_s'] / r['whole']['forward_inside_s']:.2f} "
              f"| {r['whole']['peak_rss_mb']:.0f} |")
    for r in rows:
        print(f"class map {r['side']}²: pixels sha256 {r['whole']['classes_sha256']}, "
              f"file sha256 {r['whole']['file_sha256']}; pipeline around the network "
              f"{r['mpx'] / (r['whole']['wall_s'] - r['whole']['forward_inside_s']):.2f} Mpx/s")
    steps = sorted({k for r in rows for k in r["whole"]["steps"]})
    print("\nSeconds per step (summed over the thread that runs it: the reader's, the network's and the writer's "
          "threads overlap):\n")
    print("| scene | load 1-min at the end | " + " | ".join(steps) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in steps) + " |")
    for r in rows:
        print(f"| {r['side']}² | {r['whole']['load'][0]:.2f} | "
              + " | ".join(f"{r['whole']['steps'].get(k, 0.0):.2f}" for k in steps) + " |")
    got = [r["whole"]["classes_sha256"] for r in rows]
    if args.expect and list(args.expect) != got[: len(args.expect)]:
        raise SystemExit(f"class maps changed: expected pixel hashes {list(args.expect)}, got {got}")
    ratio = rows[1]["whole"]["peak_rss_mb"] / rows[0]["whole"]["peak_rss_mb"]
    print(f"\npeak RSS large / small: {ratio:.2f} (goal ≤ 1.2); whole / bare goal on CPU ≤ 1.25. "
          "'forward inside whole' is the network's share of the same run (robust to a busy machine).")


if __name__ == "__main__":
    main()
