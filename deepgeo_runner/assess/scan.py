"""The class map and the strata read window by window: what the design and the estimators need.

A map of a whole Landsat scene is read in full-width row blocks, so memory stays bounded and
pixels keep their row-major order (the order the design's ordinals count in). A pixel belongs to
the population when both the map and the strata have data there (GDAL's mask of each), and, where
a ``domain`` is given (e.g. where a reference layer has a class), inside it. Strata on another grid
than the map are resampled onto it (nearest) on the fly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from deepgeo_runner.assess.area import PixelArea, pixel_area
from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.raster_io import Grid, reading

BLOCK_PIXELS = 4_000_000  # pixels per row block (a few MB per array)


@dataclass
class Block:
    """One full-width block of rows: the map's and the strata's values, and the population mask."""

    row0: int
    map_values: np.ndarray
    strata: np.ndarray
    valid: np.ndarray


@dataclass
class Census:
    """Pixels and hectares of every stratum and every map value over the population."""

    strata: list[int]  # stratum values, ascending
    stratum_pixels: np.ndarray
    stratum_area_ha: np.ndarray
    map_values: list[int]  # map values, ascending
    map_pixels: np.ndarray
    map_area_ha: np.ndarray

    @property
    def total_area_ha(self) -> float:
        return float(self.stratum_area_ha.sum())


class MapLayers:
    """The class map and (optionally) a strata raster on its grid, open for block reads."""

    def __init__(self, map_path: str | Path, strata_path: str | Path | None = None,
                 domain: Callable[[Window], np.ndarray] | None = None) -> None:
        """``domain(window)``: a boolean array, True where a pixel of that window belongs to the population."""
        self.domain = domain
        self.map_path = Path(map_path)
        self.strata_path = Path(strata_path) if strata_path is not None else None
        self.grid = Grid.of(self.map_path)
        if self.grid.crs is None:
            raise InputDataError(f"assess.map '{map_path}' has no CRS: georeference it (gdal_edit.py -a_srs ...).")
        try:
            self.area: PixelArea = pixel_area(self.grid.crs, self.grid.transform, self.grid.height)
        except ValueError as exc:
            raise InputDataError(f"assess.map '{map_path}': {exc}.") from exc

    @contextmanager
    def opened(self) -> Iterator[tuple[rasterio.DatasetReader, rasterio.DatasetReader | None]]:
        with ExitStack() as stack:
            stack.enter_context(reading(self.map_path, "assess.map"))
            src = stack.enter_context(rasterio.open(self.map_path))
            strata = None
            if self.strata_path is not None:
                stack.enter_context(reading(self.strata_path, "assess.strata"))
                raw = stack.enter_context(rasterio.open(self.strata_path))
                g = self.grid
                if Grid(raw.crs, raw.transform, raw.width, raw.height) != g:
                    nodata = raw.nodata if raw.nodata is not None else (255 if raw.dtypes[0] == "uint8" else None)
                    raw = stack.enter_context(WarpedVRT(raw, crs=g.crs, transform=g.transform, width=g.width,
                                                        height=g.height, resampling=Resampling.nearest,
                                                        nodata=nodata))
                strata = raw
            yield src, strata

    def blocks(self) -> Iterator[Block]:
        """Full-width row blocks, top to bottom."""
        g = self.grid
        rows = max(1, BLOCK_PIXELS // g.width)
        with self.opened() as (src, strata_src):
            for row0 in range(0, g.height, rows):
                win = Window(0, row0, g.width, min(rows, g.height - row0))
                values = src.read(1, window=win)
                valid = src.read_masks(1, window=win) > 0
                if strata_src is None:
                    strata = values
                else:
                    strata = strata_src.read(1, window=win)
                    valid &= strata_src.read_masks(1, window=win) > 0
                if self.domain is not None:
                    valid &= self.domain(win)
                yield Block(row0, values, strata, valid)

    def census(self) -> Census:
        """Pixels and hectares of each stratum and each map value (one pass over the map)."""
        strata: dict[int, list[float]] = {}
        classes: dict[int, list[float]] = {}
        for block in self.blocks():
            row_ha = np.broadcast_to(self.area.row_ha[block.row0:block.row0 + block.valid.shape[0], None],
                                     block.valid.shape)[block.valid]
            _tally(block.map_values[block.valid], row_ha, classes)
            if self.strata_path is not None:
                _tally(block.strata[block.valid], row_ha, strata)
        strata = strata if self.strata_path is not None else classes
        s, c = sorted(strata), sorted(classes)
        s_pixels = np.array([strata[v][0] for v in s], dtype=np.int64)
        c_pixels = np.array([classes[v][0] for v in c], dtype=np.int64)
        if self.area.constant:  # count × area: no summation error
            s_area, c_area = s_pixels * self.area.row_ha[0], c_pixels * self.area.row_ha[0]
        else:
            s_area, c_area = np.array([strata[v][1] for v in s]), np.array([classes[v][1] for v in c])
        return Census(s, s_pixels, s_area, c, c_pixels, c_area)

    def pixels_of(self, strata: list[int], ordinals: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Rows and columns of the chosen pixels: ``ordinals[h]`` counts the population pixels of
        stratum ``strata[h]`` in row-major order. Returned in the order of ``strata`` then ordinal."""
        seen = np.zeros(len(strata), dtype=np.int64)
        found: list[list[np.ndarray]] = [[] for _ in strata]
        width = self.grid.width
        for block in self.blocks():
            for h, value in enumerate(strata):
                where = np.flatnonzero(block.valid & (block.strata == value))
                wanted = ordinals[h]
                lo, hi = np.searchsorted(wanted, [seen[h], seen[h] + len(where)])
                found[h].append(block.row0 * width + where[wanted[lo:hi] - seen[h]])
                seen[h] += len(where)
        flat = np.concatenate([np.concatenate(f) if f else np.empty(0, np.int64) for f in found])
        return flat // width, flat % width

    def values_at(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Map value, stratum value and population membership of the pixels (rows, cols).

        Read by full-width row bands that hold sample points (one read per band, not per point:
        a thousand 1-px reads of a compressed GeoTIFF, or burns of a reference layer, cost seconds)."""
        n = len(rows)
        map_values = np.zeros(n, dtype=np.int64)
        strata = np.zeros(n, dtype=np.int64)
        valid = np.zeros(n, dtype=bool)
        with self.opened() as (src, strata_src):
            for win, idx, band_cols, band_rows in row_bands(rows, cols, self.grid.width, self.grid.height):
                values = src.read(1, window=win)[band_rows, band_cols]
                ok = src.read_masks(1, window=win)[band_rows, band_cols] > 0
                map_values[idx] = values
                if strata_src is None:
                    strata[idx] = values
                else:
                    strata[idx] = strata_src.read(1, window=win)[band_rows, band_cols]
                    ok &= strata_src.read_masks(1, window=win)[band_rows, band_cols] > 0
                if self.domain is not None:
                    ok &= self.domain(win)[band_rows, band_cols]
                valid[idx] = ok
        return map_values, strata, valid


def row_bands(rows: np.ndarray, cols: np.ndarray, width: int, height: int,
              band_pixels: int = 1 << 22) -> Iterator[tuple[Window, np.ndarray, np.ndarray, np.ndarray]]:
    """The full-width row bands (about ``band_pixels`` each) that hold some of the points, each with
    the indices of its points and their columns and rows inside the band."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    band = max(1, band_pixels // max(width, 1))
    which = rows // band
    for b in np.unique(which):
        idx = np.flatnonzero(which == b)
        row0 = int(b) * band
        yield Window(0, row0, width, min(band, height - row0)), idx, cols[idx], rows[idx] - row0


def _tally(values: np.ndarray, area_ha: np.ndarray, table: dict[int, list[float]]) -> None:
    """Add the pixel counts and hectares of each value of ``values`` to ``table``."""
    if values.size == 0:
        return
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise InputDataError("assess: the map and the strata must hold integer class/stratum values")
    ints = values.astype(np.int64)
    keys, inverse, counts = np.unique(ints, return_inverse=True, return_counts=True)
    areas = np.bincount(inverse.ravel(), weights=area_ha, minlength=len(keys))
    for key, count, area in zip(keys.tolist(), counts.tolist(), areas.tolist(), strict=True):
        entry = table.setdefault(int(key), [0, 0.0])
        entry[0] += count
        entry[1] += area
