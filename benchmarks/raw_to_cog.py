"""A new raw scene to a class-map COG: streamed from the raw bands vs prepared first (issue 22), side by side.

One command, one run:

    python benchmarks/raw_to_cog.py                       # --sizes 3900 7800, pointwise network, 2 CPU threads

For each size, a Landsat-like raw scene (7 uint16 bands, Collection 2 scale/offset, nodata 0, tiled deflate; made
once under ``--workdir``) is classified by the same "checkpoint" (its card: 7 bands + NDVI + EVI2, standardized;
the network a seeded 1×1 convolution, so that what is measured is everything but the network) in two child
processes, each timed step by step with :class:`deepgeo_runner.core.step_clock.StepClock`:

- ``stream``: the default path of a checkpoint applied to a new scene (``predict.stream=true``): the raw bands
  prepared as they are read, no stack written (:func:`deepgeo_runner.stages.raw_scene.classify_raw_bands`);
- ``prepare+predict``: ``predict.stream=false``, today's path before issue 22: ``prepared.tif`` written
  (:func:`deepgeo_runner.stages.apply.prepare_like_checkpoint`), then predicted from it.

Prints, per scene and path: wall time, the network's own forward time inside it (forward hooks), Mpx/s counting
everything but that forward, the in-run pipeline (prediction from the stack: its time − forward) for the
prepared path, the per-step seconds (steps of different threads overlap), peak RSS (VmHWM of the child), and the
class map's pixel and file hashes, which must be equal for the two paths. Prints ``uptime``'s load beside it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from prepare_scene import make_scene, peak_rss_mb  # noqa: E402  (the benchmark next door makes the same scenes)

BANDS = ["coastal", "blue", "green", "red", "nir", "swir1", "swir2"]
CLASSES = 3
STEPS = ("prepare (writes prepared.tif)", "read", "scale, indices, normalize", "cut windows", "wait for the reader",
         "forward", "blend", "argmax, encode", "write rows", "wait for the writer", "close outputs (COG, overviews)")


def card_meta() -> dict:
    """A checkpoint's flat metadata: Landsat C2 L2 bands, NDVI + EVI2, standardization (fixed statistics)."""
    features = BANDS + ["ndvi", "evi2"]
    return {"features": features, "band_names": BANDS, "indices": ["ndvi", "evi2"], "scale": 0.0000275,
            "offset": -0.2, "stats": {"method": "standard", "shift": [0.2] * 7 + [0.0, 0.0],
                                      "scale": [0.1] * 7 + [0.3, 0.3]},
            "class_names": [f"c{i}" for i in range(CLASSES)], "class_ids": list(range(1, CLASSES + 1)),
            "class_colors": ["#1b7837", "#d6604d", "#2166ac"], "model": {}, "dates": [], "nodata_rule": "gdal",
            "chip_size": 256}


def timed_net():
    """The pointwise network with hooks summing its own forward time."""
    import torch

    torch.manual_seed(0)
    net = torch.nn.Conv2d(len(BANDS) + 2, CLASSES, 1)
    inside = {"t": 0.0, "t0": 0.0}
    net.register_forward_pre_hook(lambda m, i: inside.__setitem__("t0", time.perf_counter()))
    net.register_forward_hook(lambda m, i, o: inside.__setitem__("t", inside["t"] + time.perf_counter() - inside["t0"]))
    return net, inside


def child(args) -> dict:
    """One path on one scene, in this process: its times, steps, peak RSS and class-map hashes."""
    import torch

    from deepgeo_runner.core.step_clock import StepClock
    from deepgeo_runner.ml.model_card import ModelCard
    from deepgeo_runner.ml.predict import ClassLegend, predict_scene, predict_settings
    from deepgeo_runner.stages.apply import prepare_like_checkpoint
    from deepgeo_runner.stages.raw_scene import RawRun, classify_raw_bands, pixel_preparation

    torch.set_num_threads(args.threads)
    meta, (net, inside), clock = card_meta(), timed_net(), StepClock()
    card = ModelCard.from_dict(meta)
    work = Path(args.workdir) / f"{args.child}-{args.side}"
    out = work / "prediction.tif"
    options = dict(window=args.window, overlap=args.overlap, batch_size=args.batch, cog=True)
    start = time.perf_counter()
    predict_s = None
    if args.child == "stream":
        how = RawRun("cpu", pixel_preparation(card, "cpu"), clock)
        classify_raw_bands(net, card, args.scene, work, out, how, progress=False, **options)
    else:
        with clock.step("prepare (writes prepared.tif)"):
            prepared = prepare_like_checkpoint(args.scene, work / "prepared", meta, progress=False)
        t0, f0 = time.perf_counter(), inside["t"]
        windows, outputs = predict_settings(args.window, args.overlap, args.batch, cog=True)
        predict_scene(net, prepared.path, out, windows, ClassLegend.of(meta), "cpu", False, outputs=outputs,
                      clock=clock)
        predict_s = (time.perf_counter() - t0, inside["t"] - f0)
    wall = time.perf_counter() - start
    import rasterio

    with rasterio.open(out) as src:
        pixels = hashlib.sha256(src.read(1).tobytes()).hexdigest()[:16]
    return {"wall_s": wall, "forward_s": inside["t"], "predict_s": predict_s, "steps": clock.seconds,
            "peak_rss_mb": peak_rss_mb(), "pixels": pixels, "file": hashlib.sha256(out.read_bytes()).hexdigest()[:16],
            "load": os.getloadavg()}


def child_bare(args) -> dict:
    """The network alone over as many windows as the scene has, at the same batch size, on tensors in memory:
    what the network costs with nothing beside it (the stricter reference: the forward inside a run also pays
    for the reader's and the writer's threads on the same cores)."""
    import torch

    from deepgeo_runner.geo.stitch import stride_for, window_origins

    torch.set_num_threads(args.threads)
    net, _ = timed_net()
    n = len(window_origins(args.side, args.window, stride_for(args.window, args.overlap))) ** 2
    x = torch.randn(args.batch, len(BANDS) + 2, args.window, args.window)
    with torch.no_grad():
        net(x[:2])
        start, done = time.perf_counter(), 0
        while done < n:
            net(x[: min(args.batch, n - done)])
            done += args.batch
    return {"wall_s": time.perf_counter() - start, "windows": n, "load": os.getloadavg()}


def run_child(args, kind: str, side: int, scene: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--side", str(side), "--scene", str(scene),
           "--workdir", str(args.workdir), "--window", str(args.window), "--overlap", str(args.overlap),
           "--batch", str(args.batch), "--threads", str(args.threads)]
    load = os.getloadavg()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{kind} {side}: child failed\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["load_before"] = load
    return result


def print_tables(rows: list[dict]) -> None:
    print("| scene | path | wall s | forward s | wall − forward s | Mpx/s (all but the forward) "
          "| in-run predict − forward s (Mpx/s) | peak RSS MB | class map pixels | file | load 1-min before/after |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        res, mpx = r["result"], r["mpx"]
        rest = res["wall_s"] - res["forward_s"]
        inrun = ""
        if res["predict_s"]:
            p, f = res["predict_s"]
            inrun = f"{p - f:.2f} ({mpx / (p - f):.1f})"
        print(f"| {r['side']}² ({mpx:.1f} Mpx) | {r['path']} | {res['wall_s']:.1f} | {res['forward_s']:.1f} "
              f"| {rest:.2f} | {mpx / rest:.2f} | {inrun} | {res['peak_rss_mb']:.0f} | {res['pixels']} "
              f"| {res['file']} | {res['load_before'][0]:.2f} / {res['load'][0]:.2f} |")
    print("\nSeconds per step (summed over the thread that runs it; the reader's, network's and writer's "
          "threads overlap):\n")
    print("| scene | path | " + " | ".join(STEPS) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in STEPS) + " |")
    for r in rows:
        steps = r["result"]["steps"]
        print(f"| {r['side']}² | {r['path']} | " + " | ".join(f"{steps.get(k, 0.0):.2f}" for k in STEPS) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3900, 7800])
    parser.add_argument("--window", type=int, default=256)
    parser.add_argument("--overlap", type=float, default=0.5)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="torch's threads (two cores: 2)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/deepgeo-bench-raw"))
    parser.add_argument("--child", choices=("stream", "prepared", "bare"), help=argparse.SUPPRESS)
    parser.add_argument("--side", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--scene", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child_bare(args) if args.child == "bare" else child(args)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows, failed, bare = [], [], {}
    for side in args.sizes:
        scene = args.workdir / f"raw-{side}.tif"
        if not scene.exists():
            make_scene(scene.with_suffix(".tmp.tif"), side, len(BANDS))
            os.replace(scene.with_suffix(".tmp.tif"), scene)
        results = {}
        for kind, label in (("stream", "stream (raw bands → COG)"), ("prepared", "prepare + predict")):
            results[kind] = run_child(args, kind, side, scene)
            rows.append({"side": side, "mpx": side * side / 1e6, "path": label, "result": results[kind]})
            print(f"{side}² {label}: {results[kind]['wall_s']:.1f} s", file=sys.stderr)
        bare[side] = run_child(args, "bare", side, scene)["wall_s"]
        if results["stream"]["pixels"] != results["prepared"]["pixels"]:
            failed.append(side)
    print(f"\nwindow={args.window} overlap={args.overlap} batch={args.batch} threads={args.threads}; "
          f"load average now {os.getloadavg()}\n")
    print_tables(rows)
    print("\nStricter, with the network alone on the same windows (no reader or writer beside it) as the reference:")
    for r in rows:
        rest = r["result"]["wall_s"] - bare[r["side"]]
        print(f"- {r['side']}² {r['path']}: wall − bare forward ({bare[r['side']]:.1f} s) = {rest:.1f} s → "
              f"{r['mpx'] / rest:.2f} Mpx/s")
    for side in args.sizes:
        pair = [r["result"] for r in rows if r["side"] == side]
        print(f"\n{side}²: peak RSS stream / prepare+predict {pair[0]['peak_rss_mb'] / pair[1]['peak_rss_mb']:.2f}; "
              f"class maps {'equal' if side not in failed else 'DIFFERENT'} (pixels {pair[0]['pixels']})")
    if failed:
        raise SystemExit(f"class maps differ between the streamed and the prepared path at {failed}")


if __name__ == "__main__":
    main()
