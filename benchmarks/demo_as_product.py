"""The demo scene delivered the way real products are, mapped with each recipe against its own truth (issue 20).

Real scenes reach users stretched to 8 bits, in a geographic CRS, with a nodata value of their own and
sparse polygons in yet another CRS. This writes the built-in demo that way (each band linearly stretched
from its 2nd-98th percentile to 1..255, nodata 0, warped to EPSG:4326 by nearest neighbour; the polygons
reprojected to EPSG:4674, SIRGAS 2000, as Brazilian agencies deliver them; the truth warped like the
image), runs ``deepgeo data=scene`` on it with each recipe, and scores every map against the warped truth
wall to wall: the map's own accuracy and areas, not a test split.

    python benchmarks/demo_as_product.py
    python benchmarks/demo_as_product.py --recipes "default=" "noshift=predict.prior_shift=false"

Each run is a ``deepgeo`` subprocess (one to two minutes on two quiet cores); its folder is kept under
``--out``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.warp import Resampling, calculate_default_transform, reproject

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from deepgeo_runner.geo.demo import BAND_NAMES, CLASSES, NODATA, make_demo_scene  # noqa: E402

RECIPES = {
    "default (copy-paste + prior shift)": "",
    "copy-paste, no prior shift": "predict.prior_shift=false",
}
GEOGRAPHIC = "EPSG:4326"


def stretched_geographic(image: Path, out: Path, stretch: bool = True, warp: bool = True) -> None:
    """Each band stretched 2-98 % to 1..255 (0: nodata; else kept as float reflectance, nodata -9999), warped to
    EPSG:4326 (else left on its UTM grid)."""
    with rasterio.open(image) as src:
        data = src.read()
        valid = (data != NODATA).all(axis=0)
        crs, src_transform = src.crs, src.transform
        transform, width, height = (calculate_default_transform(src.crs, GEOGRAPHIC, src.width, src.height,
                                                                *src.bounds) if warp
                                    else (src.transform, src.width, src.height))
    dtype, nodata = ("uint8", 0) if stretch else ("float32", NODATA)
    product = np.full(data.shape, nodata, dtype=dtype)
    for b, band in enumerate(data):
        lo, hi = np.percentile(band[valid], [2, 98])
        product[b] = (np.where(valid, np.clip(np.rint(1 + 254 * (band - lo) / (hi - lo)), 1, 255), 0) if stretch
                      else band)
    warped = np.full((len(data), height, width), nodata, dtype=dtype)
    for b in range(len(data)):
        reproject(product[b], warped[b], src_transform=src_transform, src_crs=crs, src_nodata=nodata,
                  dst_transform=transform, dst_crs=GEOGRAPHIC if warp else crs, dst_nodata=nodata,
                  resampling=Resampling.nearest)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": len(data), "dtype": dtype,
               "crs": GEOGRAPHIC if warp else crs, "transform": transform, "nodata": nodata, "tiled": True,
               "compress": "deflate"}
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(warped)
        dst.descriptions = BAND_NAMES


def truth_on(grid: Path, reference: Path, out: Path) -> None:
    """The demo's wall-to-wall truth warped onto ``grid`` (nearest), nodata 255."""
    with rasterio.open(grid) as g, rasterio.open(reference) as ref:
        warped = np.full((g.height, g.width), 255, dtype=np.uint8)
        reproject(ref.read(1), warped, src_transform=ref.transform, src_crs=ref.crs, src_nodata=ref.nodata,
                  dst_transform=g.transform, dst_crs=g.crs, dst_nodata=255, resampling=Resampling.nearest)
        profile = dict(g.profile, count=1, dtype="uint8", nodata=255)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(warped, 1)


def score(prediction: Path, truth: Path) -> dict:
    """Overall accuracy, and per class user's accuracy and mapped / true area - 1, over every pixel with both."""
    with rasterio.open(prediction) as p, rasterio.open(truth) as t:
        mapped, ref = p.read(1), t.read(1)
        both = (mapped != p.nodata) & (ref != t.nodata)
    m, r = mapped[both], ref[both]
    out = {"oa": float((m == r).mean()), "pixels": int(both.sum())}
    for class_id, name in enumerate(CLASSES, 1):
        drawn = m == class_id
        out[name] = (float((r[drawn] == class_id).mean()) if drawn.any() else float("nan"),
                     float(drawn.sum() / max((r == class_id).sum(), 1) - 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/demo_as_product"))
    parser.add_argument("--recipes", nargs="*", help="NAME=OVERRIDES ... (default: the built-in recipes)")
    parser.add_argument("--no-stretch", action="store_true", help="keep the float reflectance (which loss is whose)")
    parser.add_argument("--no-warp", action="store_true", help="keep the UTM grid (which loss is whose)")
    args = parser.parse_args()
    recipes = dict(r.split("=", 1) for r in args.recipes) if args.recipes else RECIPES
    args.out.mkdir(parents=True, exist_ok=True)
    demo = make_demo_scene(args.out / "demo", size=768)
    image = args.out / f"product_{'float' if args.no_stretch else '8bit'}_{'utm' if args.no_warp else '4326'}.tif"
    labels, truth = args.out / "prodes_4674.gpkg", args.out / f"truth_{image.stem}.tif"
    stretched_geographic(demo.image, image, stretch=not args.no_stretch, warp=not args.no_warp)
    gpd.read_file(demo.labels).to_crs("EPSG:4674").to_file(labels, driver="GPKG")
    truth_on(image, demo.reference, truth)
    print(f"scene: {image}, polygons {labels} (EPSG:4674), truth {truth}")
    print("| recipe | map OA | " + " | ".join(f"{c} UA / area error" for c in CLASSES) + " | wall s |")
    print("| --- | --- | " + " | ".join("---" for _ in CLASSES) + " | --- |")
    for name, overrides in recipes.items():
        run_dir = args.out / f"{name.split(' ')[0].replace(',', '')}_{image.stem}"
        command = [sys.executable, "-m", "deepgeo_runner", "data=scene", f"data.image={image.resolve()}",
                   f"data.labels={labels.resolve()}", "data.classes=[forest,deforestation,water]",
                   f"data.band_names=[{','.join(BAND_NAMES)}]", "data.block_size=128", "data.train_chips=480",
                   f"assess.reference={truth.resolve()}", f"hydra.run.dir={run_dir.resolve()}",
                   "trainer.enable_progress_bar=false", *overrides.split()]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"recipe '{name}' failed ({' '.join(command)}):\n{done.stderr[-2000:]}")
        result = score(run_dir / "prediction.tif", truth)
        cells = [f"{result[c][0]:.3f} / {result[c][1]:+.1%}" for c in CLASSES]
        print(f"| {name} | {result['oa']:.3f} | " + " | ".join(cells) + f" | {time.perf_counter() - start:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
