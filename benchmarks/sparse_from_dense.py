"""Recipes against the halo on a REAL scene with a wall-to-wall truth (issue 20).

The shared Sentinel-2 Slovenia patch has a dense land-cover raster. Analysts' training labels are
sparse: drawn inside classes, never touching another class. This makes such labels from the dense
raster (each class eroded by ``--erode`` pixels; what is left is labelled, the rest is nodata 0),
trains ``experiments=slovenia_temporal`` on them with each recipe, and scores every map against the
dense raster wall to wall: the map's own accuracy and class areas, not a test split.

    python benchmarks/sparse_from_dense.py                       # the default recipes
    python benchmarks/sparse_from_dense.py --recipes "paste=" "teacher=augmentation.teacher=true"

Each run is a ``deepgeo`` subprocess (about a minute on two quiet cores); its folder is kept under
``--out`` for a look in QGIS.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
SCENE = REPO.parent / "shared" / "data" / "slovenia_s2_timeseries"
DENSE = SCENE / "lulc_label.tif"
CLASS_VALUES = {1: "cultivated", 2: "forest", 3: "grassland", 4: "shrubland", 8: "artificial"}
RECIPES = {
    "before issue 20": "augmentation.copy_paste=0",
    "default (copy-paste)": "",
    "teacher": "augmentation.teacher=true",
    "pixel forest": "model=pixel_forest",
}


def sparse_labels(dense: Path, out: Path, erode: int) -> float:
    """Each class of ``dense`` eroded by ``erode`` px (8-connected), nodata 0 elsewhere; returns the share labelled."""
    with rasterio.open(dense) as src:
        ids, profile = src.read(1), src.profile
    sparse = np.zeros_like(ids)
    for value in CLASS_VALUES:
        core = ndimage.binary_erosion(ids == value, structure=np.ones((3, 3), bool), iterations=erode,
                                      border_value=1)
        sparse[core] = value
    profile.update(nodata=0)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(sparse, 1)
    return float((sparse > 0).mean())


def score(prediction: Path, dense: Path) -> dict:
    """Overall accuracy, and per class user's accuracy and mapped / true area - 1, over every labelled pixel."""
    with rasterio.open(dense) as src:
        truth = src.read(1)
    with rasterio.open(prediction) as src:
        index = src.read(1).astype(np.int64)
        nodata = src.nodata
    values = np.array([0, *CLASS_VALUES])  # the map holds class indices 1..K in data.classes order
    mapped = np.where(index == nodata, 0, values[np.clip(index, 0, len(values) - 1)])
    valid = (truth != 0) & (mapped != 0)
    result = {"oa": float((mapped[valid] == truth[valid]).mean())}
    for value, name in CLASS_VALUES.items():
        true_px = int((truth[valid] == value).sum())
        drawn = valid & (mapped == value)
        result[name] = (float((truth[drawn] == value).mean()) if drawn.any() else None,
                        float(drawn.sum() / true_px - 1) if true_px else None)
    return result


def run_recipe(name: str, overrides: str, labels: Path, out: Path) -> tuple[dict, float]:
    run_dir = out / name.replace(" ", "_").replace("(", "").replace(")", "")
    command = [sys.executable, "-m", "deepgeo_runner", "experiments=slovenia_temporal", f"data.labels={labels}",
               "data.allow_missing_classes=true", "assess.reference=null", f"hydra.run.dir={run_dir}",
               "trainer.enable_progress_bar=false", *overrides.split()]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"recipe '{name}' failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
    return score(run_dir / "prediction.tif", DENSE), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--erode", type=int, default=2, help="pixels each class is eroded by (default 2)")
    parser.add_argument("--out", type=Path, default=Path("runs/sparse_from_dense"))
    parser.add_argument("--recipes", nargs="*", help="NAME=OVERRIDES ... (default: the built-in recipes)")
    args = parser.parse_args()
    if not DENSE.exists():
        sys.exit(f"the shared Slovenia scene is absent ({DENSE}): nothing to measure")
    recipes = dict(r.split("=", 1) for r in args.recipes) if args.recipes else RECIPES
    args.out.mkdir(parents=True, exist_ok=True)
    labels = args.out / f"sparse_erode{args.erode}.tif"
    share = sparse_labels(DENSE, labels, args.erode)
    print(f"sparse labels: each class eroded {args.erode} px, {100 * share:.1f} % of the pixels labelled ({labels})")
    shown = ("forest", "grassland")
    print("| recipe | map OA | " + " | ".join(f"{c} UA / area error" for c in shown) + " | wall s |")
    print("| --- | --- | " + " | ".join("---" for _ in shown) + " | --- |")
    for name, overrides in recipes.items():
        result, seconds = run_recipe(name, overrides, labels, args.out)
        cells = []
        for c in shown:
            ua, area = result[c]
            cells.append(f"{ua:.3f} / {area:+.0%}" if ua is not None else f"– / {area:+.0%}")
        print(f"| {name} | {result['oa']:.3f} | " + " | ".join(cells) + f" | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
