"""The assess stage on a Landsat-size class map and on one 4x larger, side by side in one run.

One command:

    python benchmarks/assess_scene.py               # 7,800² and 15,600² maps
    python benchmarks/assess_scene.py --size 2000   # a quicker run

Each case runs in its own child process (so that its peak RSS is its own): a uint8 class map of
``size``² px (30 m, UTM) with four classes in PRODES-like proportions (deforestation 2 %, forest
gain 1.5 %, stable forest 32 %, stable non-forest 64.5 %, as in Olofsson et al.'s example), and a
reference raster that disagrees with it on about 8 % of the pixels, are written under /tmp; then
``assess_map`` draws the stratified sample (min_per_stratum allocation from target_se 0.01),
labels it from the reference raster and writes assessment.json. Printed: wall time of the
stage, Mpx/s, peak RSS, and the ratio of peak RSS large / small (goal: ≤ 1.5 — the stage reads
the map in row blocks, so memory must not grow with the scene).
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the package, when run from a checkout

CLASSES = ["deforestation", "forest_gain", "stable_forest", "stable_nonforest"]
SHARES = [0.02, 0.015, 0.32, 0.645]
ROWS_PER_WRITE = 512


def write_maps(folder: Path, size: int, seed: int = 0) -> tuple[Path, Path]:
    """The class map and its reference, written in row blocks (never the whole scene in memory)."""
    import rasterio
    from rasterio.transform import from_origin
    from rasterio.windows import Window

    rng = np.random.default_rng(seed)
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8", "nodata": 0,
               "crs": "EPSG:32722", "transform": from_origin(600_000, 9_600_000, 30, 30), "tiled": True,
               "blockxsize": 256, "blockysize": 256, "compress": "deflate"}
    cuts = np.cumsum(SHARES)
    map_path, ref_path = folder / "map.tif", folder / "reference.tif"
    tags = {f"class_{i}": name for i, name in enumerate(CLASSES, start=1)}
    with rasterio.open(map_path, "w", **profile) as m, rasterio.open(ref_path, "w", **profile) as r:
        m.update_tags(**tags)
        r.update_tags(**tags)
        for row in range(0, size, ROWS_PER_WRITE):
            h = min(ROWS_PER_WRITE, size - row)
            # patches of 16 px so that classes form areas rather than salt and pepper
            cells = rng.random((h // 16 + 1, size // 16 + 1))
            classes = (np.searchsorted(cuts, cells) + 1).astype(np.uint8)
            block = np.repeat(np.repeat(classes, 16, 0), 16, 1)[:h, :size]
            wrong = rng.random(block.shape) < 0.08
            reference = np.where(wrong, rng.integers(1, 5, block.shape, dtype=np.uint8), block)
            window = Window(0, row, size, h)
            m.write(block, 1, window=window)
            r.write(reference, 1, window=window)
    return map_path, ref_path


def one_case(size: int) -> dict:
    """Runs in the child: write the maps, time the stage, report peak RSS."""
    from deepgeo_runner.config.schema import AssessConfig, DataConfig
    from deepgeo_runner.pipeline.assess import assess_map

    folder = Path(tempfile.mkdtemp(prefix="deepgeo_bench_assess_", dir="/tmp"))
    try:
        map_path, ref_path = write_maps(folder, size)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        data = DataConfig(name="bench", classes=CLASSES)
        options = AssessConfig(reference=str(ref_path))
        start = time.perf_counter()
        result = assess_map(map_path, folder, options, data, seed=0)
        seconds = time.perf_counter() - start
        payload = json.loads(Path(result).read_text())
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {"size": size, "seconds": seconds, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_stage_mb": rss_before, "sample": payload["design"]["sample_size"],
            "overall_accuracy": payload["overall_accuracy"]["estimate"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=7800, help="side of the smaller map (px)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(one_case(args.child)))
        return
    rows = []
    for size in (args.size, 2 * args.size):
        out = subprocess.run([sys.executable, __file__, "--child", str(size)], capture_output=True, text=True,
                             check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("\nassess stage (design + reference labels + estimators), uint8 class maps, 4 classes\n")
    print("| map | stage s | Mpx/s | sample points | overall accuracy | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        mpx = r["size"] ** 2 / 1e6
        print(f"| {r['size']}² | {r['seconds']:.1f} | {mpx / r['seconds']:.1f} | {r['sample']} "
              f"| {r['overall_accuracy']:.3f} | {r['peak_rss_mb']:.0f} |")
    print(f"\npeak RSS large / small: {rows[1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f} (goal ≤ 1.5); "
          f"time large / small: {rows[1]['seconds'] / rows[0]['seconds']:.2f} (4x the pixels)")
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
