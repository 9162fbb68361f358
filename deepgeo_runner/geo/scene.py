"""One analysis grid from the inputs: mosaic of tiles, crop to a box or an AOI, reprojection.

The result is an ordinary GeoTIFF (original dtype and band order) on the target grid, written
window by window, so every later stage (prepare, rasterize, chips, predict) reads one raster
and the labels, rasterized onto the prepared grid, stay aligned with it by construction.

Rules:

- target CRS: ``crs`` or the first tile's; resolution: ``resolution`` or the first tile's
  (expressed in the target CRS when reprojected);
- extent: the union of the tiles, intersected with ``bbox`` (in the target CRS) and the
  bounds of the ``aoi`` polygons; pixels outside the AOI polygons become nodata;
- the grid stays on the first tile's pixel lattice when CRS and resolution are unchanged
  (a crop never shifts pixels); otherwise it is snapped to multiples of the resolution;
- where tiles overlap, the first listed tile that has data wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.vrt import WarpedVRT
from rasterio.warp import calculate_default_transform, transform_bounds
from rasterio.windows import Window
from rasterio.windows import bounds as window_bounds

from deepgeo_runner.core.console import progress as progress_bar
from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.choices import Resampling as ResamplingChoice
from deepgeo_runner.geo.raster_io import Grid, iter_windows, open_raster_writer, reading, valid_mask

RESAMPLING = tuple(r.value for r in ResamplingChoice)


@dataclass(frozen=True)
class SceneOptions:
    """The ``data`` keys that shape the analysis grid."""

    bbox: tuple[float, float, float, float] | None = None  # minx, miny, maxx, maxy in the target CRS
    aoi: str | Path | None = None  # vector file of the area of interest
    crs: str | None = None  # e.g. 'EPSG:32722'
    resolution: tuple[float, float] | None = None  # (x, y) pixel size in target CRS units
    resampling: str = "nearest"
    nodata: float | None = None  # nodata of the tiles, overriding what they declare

    def is_identity(self, n_images: int) -> bool:
        """True when the single input raster is already the analysis grid."""
        return n_images == 1 and self.bbox is None and self.aoi is None and self.crs is None \
            and self.resolution is None


def date_groups(image: str | Path | Sequence | Mapping) -> dict[str, list[Path]]:
    """An image option as date → tiles: a path or a list of tiles is one date (key ''); a
    mapping date → path or tiles is a time stack of separate files, in the mapping's order."""
    if isinstance(image, Mapping):
        return {str(date): _tile_paths(tiles) for date, tiles in image.items()}
    return {"": _tile_paths(image)}


def all_tiles(groups: Mapping[str, Sequence[Path]]) -> list[Path]:
    """Every raster of :func:`date_groups`' result, dates in order."""
    return [p for paths in groups.values() for p in paths]


def _tile_paths(tiles: str | Path | Sequence) -> list[Path]:
    if isinstance(tiles, str | Path):
        return [Path(tiles)]
    return [Path(p) for p in tiles]


def _open_all(paths: Sequence[str | Path]) -> list[rasterio.io.DatasetReader]:
    sources = []
    try:
        for p in paths:
            if not Path(p).is_file():
                raise InputDataError(f"image file not found: '{p}'. Check data.image.")
            with reading(p, "image"):
                src = rasterio.open(p)
            sources.append(src)
            if src.crs is None:
                raise InputDataError(f"image '{p}' has no CRS: georeference it first (gdal_edit.py -a_srs).")
        counts = {s.count for s in sources}
        if len(counts) > 1:
            raise InputDataError(
                f"data.image tiles have different band counts {[s.count for s in sources]}: a mosaic "
                "needs tiles of the same product."
            )
    except Exception:
        for s in sources:
            s.close()
        raise
    return sources


def _aoi_layer(aoi: str | Path, crs: CRS):
    import geopandas as gpd

    try:
        layer = gpd.read_file(aoi)
    except Exception as exc:
        raise InputDataError(f"cannot read data.aoi '{aoi}' as a vector file: {exc}") from exc
    if layer.crs is None:
        raise InputDataError(f"data.aoi '{aoi}' has no CRS: set one (e.g. ogr2ogr -a_srs).")
    layer = layer[layer.geometry.notna() & ~layer.geometry.is_empty].to_crs(crs)
    if layer.empty:
        raise InputDataError(f"data.aoi '{aoi}' holds no geometry.")
    return layer.geometry.make_valid()


def target_grid(paths: Sequence[str | Path], options: SceneOptions) -> Grid:
    """The analysis grid of the tiles under ``options`` (see the module's rules)."""
    sources = _open_all(paths)
    try:
        first = sources[0]
        dst_crs = CRS.from_user_input(options.crs) if options.crs else first.crs
        bounds, resolutions = [], []
        for src in sources:
            if src.crs == dst_crs:
                bounds.append(tuple(src.bounds))
                resolutions.append(src.res)
            else:
                bounds.append(transform_bounds(src.crs, dst_crs, *src.bounds, densify_pts=21))
                tr, _, _ = calculate_default_transform(src.crs, dst_crs, src.width, src.height, *src.bounds)
                resolutions.append((abs(tr.a), abs(tr.e)))
        res = tuple(float(r) for r in options.resolution) if options.resolution else resolutions[0]
        minx = min(b[0] for b in bounds)
        miny = min(b[1] for b in bounds)
        maxx = max(b[2] for b in bounds)
        maxy = max(b[3] for b in bounds)
        crops = []
        if options.bbox is not None:
            crops.append(tuple(float(v) for v in options.bbox))
        if options.aoi is not None:
            crops.append(tuple(_aoi_layer(options.aoi, dst_crs).total_bounds))
        for cx0, cy0, cx1, cy1 in crops:
            minx, miny, maxx, maxy = max(minx, cx0), max(miny, cy0), min(maxx, cx1), min(maxy, cy1)
        if not (minx < maxx and miny < maxy):
            raise InputDataError(
                f"the crop (data.bbox={options.bbox}, data.aoi={options.aoi}) does not overlap the image(s), "
                f"whose extent in {dst_crs} is {[tuple(round(v, 3) for v in b) for b in bounds]}."
            )
        rx, ry = res
        if first.crs == dst_crs and np.allclose(first.res, res):  # stay on the first tile's lattice
            ox, oy = first.transform.c, first.transform.f
        else:
            ox, oy = 0.0, 0.0
        x0 = ox + math.floor((minx - ox) / rx + 1e-9) * rx
        y0 = oy + math.ceil((maxy - oy) / ry - 1e-9) * ry
        width = max(1, math.ceil((maxx - x0) / rx - 1e-9))
        height = max(1, math.ceil((y0 - miny) / ry - 1e-9))
        return Grid(dst_crs, Affine(rx, 0.0, x0, 0.0, -ry, y0), width, height)
    finally:
        for s in sources:
            s.close()


def _fill_value(dtype: np.dtype, declared: float | None) -> float:
    if declared is not None:
        return declared
    if np.issubdtype(dtype, np.floating):
        return float("nan")
    return 0 if np.issubdtype(dtype, np.unsignedinteger) else int(np.iinfo(dtype).min)


def _aligned_offset(src: rasterio.io.DatasetReader, grid: Grid) -> tuple[int, int] | None:
    """(col, row) of the grid's origin in ``src`` when both share CRS and lattice, else None."""
    if src.crs != grid.crs:
        return None
    s, g = src.transform, grid.transform
    rotated = s.b != 0 or s.d != 0 or g.b != 0 or g.d != 0
    if rotated or not (np.isclose(s.a, g.a) and np.isclose(s.e, g.e)):
        return None
    col, row = (g.c - s.c) / s.a, (g.f - s.f) / s.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    return round(col), round(row)


class _MosaicReader:
    """Reads any window of the analysis grid from a group of tiles (first tile with data wins)."""

    def __init__(self, sources: Sequence[rasterio.io.DatasetReader], grid: Grid, options: SceneOptions,
                 dtype: np.dtype, fill: float) -> None:
        self.count, self.dtype, self.fill = sources[0].count, dtype, fill
        resampling = Resampling[options.resampling]
        self.readers = []
        for src in sources:
            src_nodata = options.nodata if options.nodata is not None else src.nodata
            offset = _aligned_offset(src, grid)
            if offset is not None:
                self.readers.append((src, offset, src_nodata, False))
            else:
                vrt = WarpedVRT(src, crs=grid.crs, transform=grid.transform, width=grid.width,
                                height=grid.height, resampling=resampling, src_nodata=src_nodata,
                                nodata=fill, dtype=dtype.name)
                self.readers.append((vrt, None, fill, True))

    def read(self, win: Window) -> np.ndarray:
        out = np.full((self.count, win.height, win.width), self.fill, dtype=self.dtype)
        filled = np.zeros((win.height, win.width), dtype=bool)
        for reader, offset, nodata, _ in self.readers:
            if offset is not None:
                c0, r0 = win.col_off + offset[0], win.row_off + offset[1]
                if c0 >= reader.width or r0 >= reader.height or c0 + win.width <= 0 or r0 + win.height <= 0:
                    continue  # this tile does not reach the window
                with reading(reader.name, "image"):
                    data = reader.read(window=Window(c0, r0, win.width, win.height), boundless=True,
                                       fill_value=nodata if nodata is not None else self.fill)
            else:
                with reading(reader.src_dataset.name, "image"):
                    data = reader.read(window=win)
            take = valid_mask(data, nodata) & ~filled
            out[:, take] = data[:, take]
            filled |= take
            if filled.all():
                break
        return out

    def close(self) -> None:
        for reader, _, _, owned in self.readers:
            if owned:
                reader.close()


def _common_dtype_fill(sources: Sequence[rasterio.io.DatasetReader], options: SceneOptions) -> tuple[np.dtype, float]:
    """One dtype holding every tile's values, and the fill value for pixels no tile covers."""
    dtype = np.result_type(*(np.dtype(s.dtypes[0]) for s in sources))
    first = sources[0]
    declared = options.nodata if options.nodata is not None else first.nodata
    return dtype, _fill_value(dtype, declared)


def build_scene(
    paths: Sequence[str | Path],
    out_path: str | Path,
    options: SceneOptions,
    window: int = 1024,
    progress: bool = True,
) -> Path:
    """Write the tiles as one GeoTIFF on :func:`target_grid` (mosaic, crop, reprojection)."""
    return build_time_stack({"": paths}, out_path, options, window, progress)


def build_time_stack(
    dates: Mapping[str, Sequence[str | Path]],
    out_path: str | Path,
    options: SceneOptions,
    window: int = 1024,
    progress: bool = True,
) -> Path:
    """Write one GeoTIFF holding every date's bands, date-major, on one analysis grid.

    Each date is a group of tiles, mosaicked, cropped and reprojected as in :func:`build_scene`;
    the grid covers the tiles of every date (a date that misses part of it is nodata there), so
    the dates stay pixel-aligned whatever their own footprints. A single date is a plain scene.
    """
    if options.resampling not in RESAMPLING:
        raise ConfigError(f"data.resampling='{options.resampling}': expected one of {list(RESAMPLING)}.")
    if not dates:
        raise ConfigError("data.image: no date to stack.")
    every = all_tiles(dates)
    grid = target_grid(every, options)
    groups: dict[str, list[rasterio.io.DatasetReader]] = {}
    readers: list[_MosaicReader] = []
    try:
        for date, paths in dates.items():  # inside the try: a bad later date closes the earlier ones
            groups[date] = _open_all(paths)
        all_sources = [s for sources in groups.values() for s in sources]
        counts = {date: sources[0].count for date, sources in groups.items()}
        if len(set(counts.values())) > 1:
            raise InputDataError(
                f"the dates of data.image have different band counts {counts}: every date needs the same bands."
            )
        dtype, fill = _common_dtype_fill(all_sources, options)
        readers = [_MosaicReader(sources, grid, options, dtype, fill) for sources in groups.values()]
        aoi = _aoi_layer(options.aoi, grid.crs) if options.aoi is not None else None
        first = all_sources[0]
        per_date = first.count
        if len(groups) == 1:
            names = list(first.descriptions) if all(first.descriptions) else None
        else:
            band = list(first.descriptions) if all(first.descriptions) else [f"band{i + 1}" for i in range(per_date)]
            names = [f"{date}_{b}" for date in groups for b in band]
        windows = iter_windows(grid.height, grid.width, window)
        with open_raster_writer(out_path, grid, per_date * len(groups), dtype, fill, names) as dst:
            for win in progress_bar(windows, desc="scene: mosaic/crop/warp/stack", unit="window",
                            disable=not progress or len(windows) < 4):
                out = np.concatenate([r.read(win) for r in readers]) if len(readers) > 1 else readers[0].read(win)
                if aoi is not None:
                    out[:, ~_inside(aoi, grid, win)] = fill
                dst.write(out, window=win)
    finally:
        for r in readers:
            r.close()
        for sources in groups.values():
            for s in sources:
                s.close()
    return Path(out_path)


def _inside(geoms, grid: Grid, win: Window) -> np.ndarray:
    """Pixels of ``win`` whose centre is inside the AOI polygons."""
    from rasterio.features import geometry_mask
    from shapely.geometry import box

    wb = window_bounds(win, grid.transform)
    hits = [g for g in geoms if g.intersects(box(*wb))]
    if not hits:
        return np.zeros((win.height, win.width), dtype=bool)
    return geometry_mask(hits, out_shape=(win.height, win.width),
                         transform=rasterio.windows.transform(win, grid.transform), invert=True)
