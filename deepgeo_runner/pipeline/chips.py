"""Stage ``chips``: cut the prepared stack and labels into a chip store on disk.

Layout of a store directory: ``{split}_image.npy`` (N, C, s, s) float32 and
``{split}_mask.npy`` (N, s, s) uint8 model targets (255 = ignore), ``chips.json`` (the
windows and class histograms) and ``chips.gpkg`` (the chip footprints, for GIS).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from shapely.geometry import box

from deepgeo_runner.geo.chips import (
    SPLITS,
    Window,
    check_no_leakage,
    grid_windows,
    random_windows,
    require_chips,
)
from deepgeo_runner.geo.raster_io import valid_mask
from deepgeo_runner.geo.rasterize import NODATA

log = logging.getLogger(__name__)

IGNORE = 255


@dataclass(frozen=True)
class ChipStore:
    """Where a chip store lives and how many chips each split holds."""

    path: Path
    counts: dict[str, int]
    n_features: int


def target_lut(n_classes: int, background_is_class: bool) -> np.ndarray:
    """Label ids (0 background, 1..N, 255 nodata) → model targets (0..K-1, 255 ignore)."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    if background_is_class:
        lut[: n_classes + 1] = np.arange(n_classes + 1)
    else:
        lut[1 : n_classes + 1] = np.arange(n_classes)
    return lut


def build_chip_store(
    prepared: str | Path,
    labels: str | Path,
    out_dir: str | Path,
    split_map: np.ndarray,
    chip_size: int,
    train_chips: int,
    eval_stride: int,
    min_labelled_fraction: float,
    lut: np.ndarray,
    n_targets: int,
    seed: int,
) -> ChipStore:
    """Random training chips and grid val/test chips, each wholly inside its split's blocks."""
    out_dir = Path(out_dir)
    with rasterio.open(prepared) as src:
        stack = src.read().astype(np.float32)
        valid = valid_mask(stack, src.nodata)
        transform, crs = src.transform, src.crs
    with rasterio.open(labels) as src:
        targets = lut[src.read(1)]
    targets[~valid] = IGNORE
    stack[:, ~valid] = 0.0  # the normalized mean: nodata must not look like extreme data
    labelled = targets != IGNORE
    windows: dict[str, list[Window]] = {}
    hint = (
        f"no window of {chip_size} px fits inside the SPLIT blocks with at least "
        f"{100 * min_labelled_fraction:.0f} percent labelled pixels. Lower data.chip_size or "
        "data.min_valid_fraction, raise data.block_size, or check that the labels overlap the image."
    )
    for split_id, split in enumerate(SPLITS):
        in_split = split_map == split_id
        if split == "train":
            found = random_windows(in_split, labelled, chip_size, train_chips,
                                   min_labelled_fraction, seed)
        else:
            found = grid_windows(in_split, labelled, chip_size, eval_stride, min_labelled_fraction)
        require_chips(split, found, hint.replace("SPLIT", split))
        windows[split] = found
    check_no_leakage(windows, split_map.shape)
    records = []
    for split, found in windows.items():
        images = np.lib.format.open_memmap(
            out_dir / f"{split}_image.npy", "w+", np.float32,
            (len(found), stack.shape[0], chip_size, chip_size),
        )
        masks = np.lib.format.open_memmap(
            out_dir / f"{split}_mask.npy", "w+", np.uint8, (len(found), chip_size, chip_size)
        )
        for i, w in enumerate(found):
            rows, cols = w.slices
            images[i] = stack[:, rows, cols]
            masks[i] = targets[rows, cols]
            hist = np.bincount(masks[i].ravel(), minlength=256)
            records.append({
                "split": split, "index": i, "row": w.row, "col": w.col, "size": w.size,
                "labelled_fraction": float(1 - hist[IGNORE] / masks[i].size),
                "histogram": hist[:n_targets].tolist(),
            })
        images.flush()
        masks.flush()
    counts = {split: len(found) for split, found in windows.items()}
    (out_dir / "chips.json").write_text(json.dumps({"counts": counts, "chips": records}))
    _write_footprints(out_dir / "chips.gpkg", records, transform, crs)
    log.info("chips: %s chips of %d px", counts, chip_size)
    return ChipStore(out_dir, counts, stack.shape[0])


def _write_footprints(path: Path, records: Sequence[dict], transform, crs) -> None:
    """Chip footprints as polygons, so a user can see in QGIS where each split was cut."""
    geoms = []
    for r in records:
        x0, y0 = transform * (r["col"], r["row"])
        x1, y1 = transform * (r["col"] + r["size"], r["row"] + r["size"])
        geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    frame = gpd.GeoDataFrame(
        {k: [r[k] for r in records] for k in ("split", "index", "row", "col", "size", "labelled_fraction")},
        geometry=geoms, crs=crs,
    )
    frame.to_file(path, driver="GPKG")


def load_chip_store(entry: str | Path) -> ChipStore:
    entry = Path(entry)
    counts = json.loads((entry / "chips.json").read_text())["counts"]
    n_features = int(np.load(entry / "train_image.npy", mmap_mode="r").shape[1])
    return ChipStore(entry, counts, n_features)


__all__ = ["ChipStore", "build_chip_store", "load_chip_store", "target_lut", "IGNORE", "NODATA"]
