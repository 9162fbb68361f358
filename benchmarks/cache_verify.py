"""What verifying a cache entry costs against the stage it protects, side by side in one run.

One command:

    python benchmarks/cache_verify.py              # --size 7800: a Landsat-size 8-feature prepared.tif (~2 GB)
    python benchmarks/cache_verify.py --size 4000  # a quicker run (~0.5 GB)

Makes a synthetic scene of ``size``² px with 6 uint16 reflectance bands in a temporary folder
under /tmp (deleted afterwards), then, as the stage cache does:

* prepare: bands + NDVI + EVI2, standardized, written as an 8-band float32 ``prepared.tif``
  (the stage the ``prepare`` entry protects), timed;
* chips: a random/grid chip store of 256² chips cut from it (the ``chips`` stage), timed;
* for each entry: the manifest written at build (size + SHA-256 of every file), a full
  verification (every file hashed again, page cache warm, as right after a build or on a
  machine with memory to spare), and the quick re-verification (one ``stat`` per file against
  the stamp of the last full one), each as a ratio of the stage's own time;
* hashing throughput of the prepared file with SHA-256, BLAKE2b (and xxh3-128 when the
  ``xxhash`` package is installed), to justify the choice.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BANDS = ["blue", "green", "red", "nir", "swir1", "swir2"]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))  # the scene maker of prepare_scene.py
sys.path.insert(0, str(HERE.parent))  # the package, when run from a checkout


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return time.perf_counter() - start, result


def hash_rate(path: Path, name: str) -> float:
    """MB/s of hashing ``path`` (already in the page cache) with ``name``."""
    from deepgeo_runner.core.cache import READ_BYTES

    if name == "xxh3_128":
        import xxhash

        digest = xxhash.xxh3_128()
    else:
        digest = hashlib.new(name)
    buffer = bytearray(READ_BYTES)
    view = memoryview(buffer)
    start = time.perf_counter()
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buffer):
            digest.update(view[:n])
    return path.stat().st_size / 1e6 / (time.perf_counter() - start)


def entry_size_mb(entry: Path) -> float:
    return sum(p.stat().st_size for p in entry.rglob("*") if p.is_file()) / 1e6


def measure_entry(entry: Path, payload: dict) -> dict[str, float]:
    """Manifest at build, full verification, quick (stat) re-verification of one entry."""
    from deepgeo_runner.core.cache import verify_entry, write_manifest

    manifest_s, _ = timed(write_manifest, entry, payload)
    full_s, problem = timed(verify_entry, entry, True)
    assert problem is None, problem
    quick_s, problem = timed(verify_entry, entry, False)
    assert problem is None, problem
    return {"manifest_s": manifest_s, "full_s": full_s, "quick_s": quick_s, "mb": entry_size_mb(entry)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=7800, help="side of the scene (px)")
    parser.add_argument("--chip", type=int, default=256, help="chip side (px)")
    parser.add_argument("--train-chips", type=int, default=300, help="random training chips")
    args = parser.parse_args()

    from prepare_scene import make_scene

    from deepgeo_runner.core.cache import hash_payload
    from deepgeo_runner.geo.chips import split_blocks
    from deepgeo_runner.geo.raster_io import Grid, write_raster
    from deepgeo_runner.stages.chips import ChipPlan, build_chip_store, target_lut
    from deepgeo_runner.stages.prepare import prepare_scene

    tmp = Path(tempfile.mkdtemp(prefix="deepgeo_bench_cache_", dir="/tmp"))
    try:
        image = tmp / "scene.tif"
        make_scene(image, args.size, len(BANDS))
        split = split_blocks((args.size, args.size), 2 * args.chip, [0.6, 0.2, 0.2], 0)
        prepare_payload = {"bench": "prepare", "size": args.size}
        prepared = tmp / "prepare" / hash_payload(prepare_payload)
        prepare_s, _ = timed(prepare_scene, image, prepared, BANDS, ["ndvi", "evi2"], "standard", split == 0,
                             scale=0.0000275, offset=-0.2, progress=False)
        grid = Grid.of(prepared / "prepared.tif")
        rng = np.random.default_rng(0)
        labels = np.repeat(np.repeat(rng.integers(1, 4, (args.size // 32 + 1,) * 2, dtype=np.uint8), 32, 0), 32, 1)
        write_raster(tmp / "labels.tif", labels[: args.size, : args.size], grid, 255)
        chips_payload = {"bench": "chips", "size": args.size}
        chips = tmp / "chips" / hash_payload(chips_payload)
        chips.mkdir(parents=True)
        plan = ChipPlan(chip_size=args.chip, train_chips=args.train_chips, buffer=args.chip)
        chips_s, _ = timed(build_chip_store, prepared / "prepared.tif", tmp / "labels.tif", chips, split, plan,
                           target_lut(3, False), 3, 0)
        rows = [("prepare", prepare_s, measure_entry(prepared, prepare_payload)),
                ("chips", chips_s, measure_entry(chips, chips_payload))]
        rates = {name: hash_rate(prepared / "prepared.tif", name) for name in ("sha256", "blake2b")}
        try:
            rates["xxh3_128"] = hash_rate(prepared / "prepared.tif", "xxh3_128")
        except ImportError:
            pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"\ncache verification: scene {args.size}x{args.size}, 6 bands uint16 -> 8 float32 features "
          f"(NDVI, EVI2), chips {args.chip}² ({args.train_chips} random training chips + grid val/test)\n")
    print("| entry | size MB | stage s | manifest at build s (ratio) | full verify s (ratio) | MB/s "
          "| quick re-verify ms (ratio) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, stage_s, m in rows:
        print(f"| {name} | {m['mb']:.0f} | {stage_s:.1f} | {m['manifest_s']:.2f} ({m['manifest_s'] / stage_s:.3f}) "
              f"| {m['full_s']:.2f} ({m['full_s'] / stage_s:.3f}) | {m['mb'] / m['full_s']:.0f} "
              f"| {1000 * m['quick_s']:.2f} ({m['quick_s'] / stage_s:.5f}) |")
    print("\nhash throughput on prepared.tif (page cache warm): "
          + ", ".join(f"{k} {v:.0f} MB/s" for k, v in rates.items())
          + ("" if "xxh3_128" in rates else " (xxhash not installed)"))
    print(json.dumps({"rows": [{"entry": n, "stage_s": s, **m} for n, s, m in rows], "hash_mb_s": rates}))


if __name__ == "__main__":
    main()
