"""Stage ``rasterize``: ground truth onto the analysis grid, as a colour-tabled label GeoTIFF."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import rasterio

from deepgeo_runner.core.console import progress as progress_bar
from deepgeo_runner.geo.raster_io import Grid, NodataValue, iter_windows, open_raster_writer, read_valid
from deepgeo_runner.geo.rasterize import NODATA, LabelSource, class_colormap

log = logging.getLogger(__name__)

LABEL_WINDOW = 2048  # px side of the windows labels are burnt in (4 MB of uint8 each)


def rasterize_labels(
    labels: str | Path,
    prepared: str | Path,
    out_path: str | Path,
    classes: Sequence[str],
    class_colors: Sequence[str],
    class_column: str = "class",
    class_values: Sequence | None = None,
    *,
    all_touched: bool = False,
    class_groups: Mapping[str, Sequence] | None = None,
    others: str = "background",
    window: int = LABEL_WINDOW,
    progress: bool = True,
    nodata: NodataValue = None,
    nodata_rule: str = "gdal",
    dates: int = 1,
) -> Path:
    """Write ``labels.tif``: 0 background, 1..N classes, 255 where the image has no data.

    Window by window, so that memory does not grow with the scene: each window burns the
    polygons that touch it and blanks the pixels where the prepared stack has no data.

    Args:
        all_touched: burn every pixel a polygon touches (thin features), not only those
            whose centre is inside.
        class_groups: class of interest → source classes merged into it.
        others: labelled features of no class of interest: 'background' (id 0) or 'ignore' (255).
        nodata, nodata_rule: which pixels of ``prepared`` (any raster on the wanted grid: the
            analysis image or a prepared stack) hold no data, as in
            :func:`deepgeo_runner.geo.raster_io.read_valid`.
    """
    with rasterio.open(prepared) as src:
        grid = Grid(src.crs, src.transform, src.width, src.height)
        source = LabelSource(labels, grid, class_column, classes, class_values, all_touched,
                             class_groups, others)
        tags = {f"class_{i}": name for i, name in enumerate(classes, start=1)}
        tags["class_0"] = "background"
        tags["class_255"] = "nodata"
        if class_groups:
            tags["class_groups"] = {k: list(v) for k, v in class_groups.items()}
        counts = np.zeros(256, dtype=np.int64)
        windows = iter_windows(grid.height, grid.width, window)
        with open_raster_writer(out_path, grid, 1, "uint8", NODATA, ["class"], tags,
                                class_colormap(class_colors)) as dst:
            quiet = not progress or len(windows) < 4
            for win in progress_bar(windows, desc="rasterize", unit="window", disable=quiet):
                ids = source.burn(win)
                ids[~read_valid(src, src.read(window=win), win, nodata, nodata_rule, dates=dates)] = NODATA
                counts += np.bincount(ids.ravel(), minlength=256)
                dst.write(ids, 1, window=win)
    all_nodata = counts[NODATA] == counts.sum()
    if all_nodata:
        log.warning("rasterize: every pixel of '%s' is nodata (%s rule): no class can be labelled", prepared,
                    nodata_rule)
    for class_id, name in enumerate(classes, start=1):
        log.info("rasterize: %s → id %d, %d px", name, class_id, counts[class_id])
        if counts[class_id] == 0 and not all_nodata:
            log.warning("rasterize: class '%s' has no labelled pixel inside the image", name)
    return Path(out_path)
