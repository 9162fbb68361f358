"""Stage ``prepare`` on Landsat-size scenes: wall time, MB/s and peak memory, small vs 4× larger.

One command, one run:

    python benchmarks/prepare_scene.py                 # --size 7800 --bands 7 --window 1024

Makes two synthetic scenes in a temporary folder under /tmp (deleted afterwards): one of
``size``² px (a Landsat scene is about 7,800²) and one of (2·size)² px, i.e. 4× the pixels,
both ``bands`` bands of uint16 digital numbers written as a tiled, deflate-compressed GeoTIFF
like a Collection 2 COG. Each is prepared with Landsat C2 L2 scale/offset, two indices
(NDVI, EVI2) and per-band standardization fitted on a block split of the scene, in a child
process of its own, so that the peak resident memory (RSS) of one case cannot contaminate
the other. Prints a table and the ratio of peak RSS large / small (the goal is ≤ 1.5: memory
must not grow with the scene).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BLOCK = 512  # side of the train/val/test blocks of the benchmark's split


def make_scene(path: Path, size: int, bands: int) -> None:
    """A smooth synthetic reflectance field with noise, written window by window (bounded memory)."""
    import rasterio
    from affine import Affine

    profile = dict(driver="GTiff", width=size, height=size, count=bands, dtype="uint16",
                   crs="EPSG:32622", transform=Affine(30, 0, 4e5, 0, -30, 9.6e6), nodata=0,
                   tiled=True, blockxsize=512, blockysize=512, compress="deflate", zlevel=1,
                   num_threads="ALL_CPUS", bigtiff="IF_SAFER")
    step = 2048
    with rasterio.open(path, "w", **profile) as dst:
        for row in range(0, size, step):
            for col in range(0, size, step):
                h, w = min(step, size - row), min(step, size - col)
                rng = np.random.default_rng(row * 100_003 + col)
                yy, xx = np.mgrid[row:row + h, col:col + w].astype(np.float32) / size
                field = 0.5 + 0.4 * np.sin(6 * xx) * np.cos(5 * yy)
                data = np.empty((bands, h, w), dtype=np.uint16)
                for b in range(bands):
                    noise = 0.01 * rng.standard_normal((h, w), np.float32)
                    refl = 0.03 + 0.3 * field * (0.6 + 0.1 * b) + noise
                    data[b] = np.clip((refl + 0.2) / 0.0000275, 1, 65535).astype(np.uint16)
                dst.write(data, window=rasterio.windows.Window(col, row, w, h))


def block_split(window) -> np.ndarray:
    """Training area of the benchmark: 60 % of BLOCK-px blocks, chosen by a hash of the block."""
    rows = np.arange(window.row_off, window.row_off + window.height) // BLOCK
    cols = np.arange(window.col_off, window.col_off + window.width) // BLOCK
    code = (rows[:, None] * 7919 + cols[None, :] * 104729) % 10
    return code < 6


def peak_rss_mb() -> float:
    """This process's peak RSS since it started its program.

    /proc's VmHWM belongs to the address space made by exec, whereas ru_maxrss would also count
    the parent's pages at fork time (and the parent made the scenes).
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_case(image: str, out_dir: str, window: int) -> None:
    """Child process: prepare one scene, print wall time and this process's peak RSS as JSON."""
    from deepgeo_runner.stages.prepare import PrepareOptions, prepare_scene

    rss_start = peak_rss_mb()
    start = time.perf_counter()
    prepare_scene(image, out_dir, PrepareOptions(["coastal", "blue", "green", "red", "nir", "swir1", "swir2"],
                  ["ndvi", "evi2"], "standard", scale=0.0000275, offset=-0.2, window=window, progress=False),
                  block_split)
    wall = time.perf_counter() - start
    peak = peak_rss_mb()
    print(json.dumps({"wall_s": wall, "peak_rss_mb": peak, "rss_after_imports_mb": rss_start}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=7800, help="side of the small scene (px)")
    parser.add_argument("--bands", type=int, default=7)
    parser.add_argument("--window", type=int, default=1024, help="processing window side (px)")
    parser.add_argument("--case", nargs=2, metavar=("IMAGE", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run_case(args.case[0], args.case[1], args.window)
        return
    if args.bands != 7:
        sys.exit("--bands: the benchmark names 7 Landsat OLI bands; keep 7.")
    tmp = Path(tempfile.mkdtemp(prefix="deepgeo_bench_prepare_", dir="/tmp"))
    rows = []
    try:
        for label, size in (("landsat", args.size), ("4x larger", 2 * args.size)):
            image = tmp / f"scene_{size}.tif"
            t0 = time.perf_counter()
            make_scene(image, size, args.bands)
            made = time.perf_counter() - t0
            out = tmp / f"prepared_{size}"
            proc = subprocess.run([sys.executable, __file__, "--window", str(args.window), "--case",
                                   str(image), str(out)], capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                sys.exit(f"case {label} failed:\n{proc.stderr[-4000:]}")
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            in_mb = size * size * args.bands * 2 / 1e6
            out_mb = size * size * (args.bands + 2) * 4 / 1e6
            rows.append({"case": label, "px": f"{size}x{size}", "in_mb": in_mb, "out_mb": out_mb,
                         "file_mb": (out / "prepared.tif").stat().st_size / 1e6, "made_s": made, **result})
            image.unlink()
            shutil.rmtree(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\nprepare: {args.bands} bands uint16 + ndvi + evi2, standard (train blocks), window "
          f"{args.window}, float32 output (deflate)\n")
    print("| case | pixels | input MB (raw) | output MB (raw / on disk) | wall s | MB/s (input) "
          "| Mpx/s | peak RSS MB | RSS after imports MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        side = int(r["px"].split("x")[0])
        print(f"| {r['case']} | {r['px']} | {r['in_mb']:.0f} | {r['out_mb']:.0f} / {r['file_mb']:.0f} "
              f"| {r['wall_s']:.1f} | {r['in_mb'] / r['wall_s']:.1f} | {side * side / 1e6 / r['wall_s']:.2f} "
              f"| {r['peak_rss_mb']:.0f} | {r['rss_after_imports_mb']:.0f} |")
    ratio = rows[1]["peak_rss_mb"] / rows[0]["peak_rss_mb"]
    print(f"\npeak RSS large / small: {ratio:.2f} (goal ≤ 1.5); "
          f"time large / small: {rows[1]['wall_s'] / rows[0]['wall_s']:.2f} (4× the pixels)")


if __name__ == "__main__":
    main()
