"""Whole-scene prediction: overlapping windows, blended scores, a georeferenced class map.

Windows are read from the prepared raster one row of windows at a time and their weighted
scores accumulated in memory-mapped arrays beside the output, so memory stays bounded by a
row of windows whatever the scene size. The class map is written with exactly the input's
grid and CRS, and nodata wherever the input had nodata.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.windows import Window as RioWindow
from tqdm.auto import tqdm

from deepgeo_runner.geo.raster_io import Grid, valid_mask, write_raster
from deepgeo_runner.geo.rasterize import NODATA, class_colormap
from deepgeo_runner.geo.stitch import blend_weights, stride_for, window_origins


@torch.no_grad()
def predict_scene(
    model: torch.nn.Module,
    image_path: str | Path,
    out_path: str | Path,
    window: int,
    overlap: float,
    batch_size: int,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    class_colors: Sequence[str],
    device: str | torch.device = "cpu",
    progress: bool = True,
) -> Path:
    """Classify every pixel of ``image_path`` (a prepared, normalized stack) into ``out_path``.

    Args:
        model: maps (B, C, window, window) to logits (B, K, window, window).
        class_ids: the id written for each of the K model outputs (e.g. 1..N).
        class_names, class_colors: for the colour table and metadata of the class map.
    """
    out_path = Path(out_path)
    model = model.eval().to(device)
    stride = stride_for(window, overlap)
    weights = torch.from_numpy(blend_weights(window)).to(device)
    lut = np.asarray(class_ids, dtype=np.uint8)
    with rasterio.open(image_path) as src:
        grid = Grid(src.crs, src.transform, src.width, src.height)
        nodata = src.nodata
        height, width = grid.shape
        rows, cols = window_origins(height, window, stride), window_origins(width, window, stride)
        n_classes = len(class_ids)
        with tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".predict-") as tmp:
            scores = np.lib.format.open_memmap(
                os.path.join(tmp, "scores.npy"), "w+", np.float32, (n_classes, height, width)
            )
            weight_sum = np.lib.format.open_memmap(
                os.path.join(tmp, "weights.npy"), "w+", np.float32, (height, width)
            )
            valid = np.lib.format.open_memmap(
                os.path.join(tmp, "valid.npy"), "w+", np.bool_, (height, width)
            )
            bar = tqdm(total=len(rows) * len(cols), desc="predict windows", disable=not progress)
            for row in rows:
                strip_h = min(window, height - row)
                strip = src.read(window=RioWindow(0, row, width, strip_h)).astype(np.float32)
                strip_valid = valid_mask(strip, nodata)
                valid[row : row + strip_h] = strip_valid
                strip[:, ~strip_valid] = 0.0
                padded = np.zeros((strip.shape[0], window, width + window), dtype=np.float32)
                padded[:, :strip_h, :width] = strip
                for start in range(0, len(cols), batch_size):
                    batch_cols = cols[start : start + batch_size]
                    batch = np.stack([padded[:, :, c : c + window] for c in batch_cols])
                    logits = model(torch.from_numpy(batch).to(device)).float()
                    weighted = (logits * weights).cpu().numpy()
                    for i, c in enumerate(batch_cols):
                        w = min(window, width - c)
                        scores[:, row : row + strip_h, c : c + w] += weighted[i, :, :strip_h, :w]
                        weight_sum[row : row + strip_h, c : c + w] += weights[:strip_h, :w].cpu().numpy()
                    bar.update(len(batch_cols))
            bar.close()
            classes = np.full((height, width), NODATA, dtype=np.uint8)
            for r0 in range(0, height, 256):
                r1 = min(r0 + 256, height)
                best = scores[:, r0:r1].argmax(axis=0)
                classes[r0:r1] = np.where(valid[r0:r1], lut[best], NODATA)
    tags = {f"class_{i}": name for i, name in zip(class_ids, class_names, strict=True)}
    return write_raster(
        out_path,
        classes,
        grid,
        nodata=NODATA,
        band_names=["class"],
        colormap=class_colormap(class_colors, first_id=int(class_ids[0])),
        tags=tags,
    )
