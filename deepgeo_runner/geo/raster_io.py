"""Reading and writing rasters without ever losing the grid, the CRS or nodata.

Every GeoTIFF the runner writes goes through here: :func:`write_raster` for an array in memory,
:func:`open_raster_writer` for one written piece by piece (window by window, or top down in row
ranges with :class:`RowAppender`), both under a temporary name renamed into place when complete,
and :func:`rewrite_as_cog` for Cloud-Optimized copies. A change to how rasters are laid out,
compressed, tagged or committed goes here; what is in their pixels belongs to the stage that
computes them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.shutil
import rioxarray  # noqa: F401  (registers the .rio accessor)
import xarray as xr
from affine import Affine
from rasterio._err import CPLE_BaseError
from rasterio.crs import CRS
from rasterio.windows import Window

from deepgeo_runner.core.atomic import output_errors, temp_path
from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.nodata import (  # noqa: F401  (the readers of rasters use them from here)
    NODATA_RULES,
    NodataValue,
    mask_band_kind,
    mask_source,
    per_band_nodata,
    read_valid,
    valid_mask,
)


@dataclass(frozen=True)
class Grid:
    """The pixel grid of a raster: what every derived raster must keep exactly."""

    crs: CRS
    transform: Affine
    width: int
    height: int

    @classmethod
    def of(cls, path: str | Path) -> Grid:
        with reading(path), rasterio.open(path) as src:
            return cls(src.crs, src.transform, src.width, src.height)

    @property
    def shape(self) -> tuple[int, int]:
        return self.height, self.width


def _gdal_detail(exc: BaseException) -> str:
    """GDAL's own words: rasterio's "Read failed. See previous exception" hides them in the cause.

    The outermost and the innermost message: what failed, and why (e.g. bytes missing).
    """
    messages = []
    while exc is not None:
        text = str(exc).strip().rstrip(".")
        if text and "See previous exception" not in text and text not in messages:
            messages.append(text)
        exc = exc.__cause__ or exc.__context__
    return "; ".join(messages[:1] + messages[1:][-1:]) or "unknown GDAL error"


@contextmanager
def reading(path: str | Path, what: str = "raster", fix: str | None = None) -> Iterator[None]:
    """Report a raster that cannot be read (not a raster, truncated, broken tiles) naming the file.

    GDAL fails deep inside a read (a tile past the end of a truncated file) with "Read failed";
    the error raised here names ``path`` (what it is, e.g. the config key) and how to check it.
    """
    try:
        yield
    except InputDataError:
        raise
    except (rasterio.errors.RasterioError, CPLE_BaseError) as exc:
        raise InputDataError(
            f"cannot read {what} '{path}': {_gdal_detail(exc)}. "
            + (fix or f"The file is not a raster GDAL can read, or it is damaged or truncated: check it with "
                      f"gdalinfo -checksum '{path}' and copy or download it again.")
        ) from exc


def check_raster_readable(path: str | Path, what: str = "raster") -> None:
    """Open ``path`` and decode its first and last blocks: catches a text file named .tif and,
    cheaply, a truncated file (the last full-resolution tile lies at the end of a GeoTIFF or COG)
    before any heavy work. Damage in the middle is caught when read (:func:`reading`)."""
    with reading(path, what), rasterio.open(path) as src:
        src.read(1, window=Window(0, 0, 1, 1))
        src.read(src.count, window=Window(src.width - 1, src.height - 1, 1, 1))


def open_image(path: str | Path, nodata: float | None = None) -> xr.DataArray:
    """Open a GeoTIFF/COG lazily with rioxarray, checking what later stages rely on.

    Args:
        path: the raster file.
        nodata: the value to treat as nodata when the file declares none.
    """
    path = Path(path)
    if not path.is_file():
        raise InputDataError(f"image file not found: '{path}'. Set data.image to an existing GeoTIFF.")
    try:
        image = rioxarray.open_rasterio(path, masked=False, cache=False)
    except Exception as exc:  # rasterio raises several types for unreadable files
        raise InputDataError(f"cannot read image '{path}' as a raster: {_gdal_detail(exc)}") from exc
    if isinstance(image, list):
        raise InputDataError(f"image '{path}' holds several subdatasets; give one of them.")
    if image.rio.crs is None:
        raise InputDataError(
            f"image '{path}' has no CRS: georeference it first (e.g. gdal_edit.py -a_srs EPSG:XXXX)."
        )
    if nodata is not None:
        image = image.rio.write_nodata(nodata)
    return image


SAMPLE_PIXELS = 1_000_000  # a decimated read for whole-scene statistics: well under a second on Landsat scenes


def read_sample(path: str | Path, nodata: NodataValue = None, rule: str = "gdal", dates: int = 1,
                max_pixels: int = SAMPLE_PIXELS) -> tuple[np.ndarray, np.ndarray, str]:
    """Every band of ``path`` read decimated (nearest) to about ``max_pixels``, its valid pixels
    by the rule the stages use (:func:`read_valid`: the file's mask at the same size, or the
    nodata values), and its dtype: what the data check and the drift profile summarize."""
    from rasterio.enums import Resampling

    with rasterio.open(path) as src:
        factor = max(1, int(np.ceil(np.sqrt(src.width * src.height / max_pixels))))
        shape = (src.count, max(1, src.height // factor), max(1, src.width // factor))
        data = src.read(out_shape=shape, resampling=Resampling.nearest)
        masked = nodata is None and mask_band_kind(src)
        mask = src.dataset_mask(out_shape=shape[1:], resampling=Resampling.nearest) > 0 if masked else True
        if masked and rule == "gdal":
            valid = mask & np.all(np.isfinite(data), axis=0)
        else:
            valid = valid_mask(data, nodata if nodata is not None else list(src.nodatavals), rule, dates) & mask
        return data, valid, src.dtypes[0]


def write_raster(
    path: str | Path,
    data: np.ndarray,
    grid: Grid,
    nodata: float | int | None,
    band_names: Sequence[str] | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    tags: dict[str, Any] | None = None,
) -> Path:
    """Write a tiled, compressed GeoTIFF atomically (temporary name, then rename).

    A half-written file never appears under the final name, so an interrupted run cannot
    leave a corrupt raster that a later run would trust.
    """
    path = Path(path)
    if data.ndim == 2:
        data = data[None]
    if data.shape[1:] != grid.shape:
        raise ValueError(f"array of shape {data.shape[1:]} does not fit the grid {grid.shape}")
    tmp = temp_path(path)
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": data.shape[0],
        "dtype": data.dtype,
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": nodata,
        "compress": "deflate",
        "tiled": grid.width >= 256 and grid.height >= 256,
    }
    if profile["tiled"]:
        profile.update(blockxsize=256, blockysize=256)
    try:
        if colormap:
            profile["photometric"] = "palette"
        with output_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(tmp, "w", **profile) as dst:
                if colormap:  # before the pixels: GDAL cannot change the colour model once writing
                    dst.write_colormap(1, colormap)
                dst.write(data)
                for i, name in enumerate(band_names or [], start=1):
                    dst.set_band_description(i, name)
                if tags:
                    dst.update_tags(**{k: str(v) for k, v in tags.items()})
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def iter_windows(height: int, width: int, size: int) -> list[Window]:
    """Square windows of ``size`` px covering the grid row by row (edge windows smaller).

    With ``size`` a multiple of the 256-px output tiles, each window fills whole tiles, and
    the memory a window takes does not depend on the scene's size.
    """
    return [
        Window(col, row, min(size, width - col), min(size, height - row))
        for row in range(0, height, size)
        for col in range(0, width, size)
    ]


@contextmanager
def open_raster_writer(
    path: str | Path,
    grid: Grid,
    count: int,
    dtype: str | np.dtype,
    nodata: float | int | None,
    band_names: Sequence[str] | None = None,
    tags: dict[str, Any] | None = None,
    colormap: dict[int, tuple[int, int, int, int]] | None = None,
    zlevel: int = 1,
    cog: bool = False,
    *,
    tiled: bool | None = None,
    nbits: int | None = None,
    scale: float | None = None,
    num_threads: str | None = "ALL_CPUS",
) -> Iterator[rasterio.io.DatasetWriter]:
    """A tiled, deflate-compressed GeoTIFF opened for writing window by window.

    It is written under a temporary name and renamed into place only when the block exits
    without error, so a crash never leaves a half-written raster under the final name.
    BIGTIFF is chosen by GDAL when the file may pass 4 GB. ``zlevel`` 1 compresses about as
    well as 6 on imagery at a fraction of the time, which matters for cached intermediates.
    ``cog`` rewrites the finished file as a Cloud-Optimized GeoTIFF with overviews (averaged,
    or nearest for a colour-mapped class raster) before the rename.

    Args:
        tiled: 256-px tiles; by default only when the grid is at least one tile in each direction.
        zlevel: deflate's level; 0 stores the tiles uncompressed.
        nbits: bits stored per sample (16 with float32: half floats, read back as float32).
        scale: the scale of every band (value × scale is the quantity the band stands for).
        num_threads: GDAL's compression threads (``None``: compress in the writing thread).
    """
    path = Path(path)
    tmp = temp_path(path)
    profile = _writer_profile(grid, count, dtype, nodata, zlevel, tiled, nbits, num_threads, bool(colormap))
    try:
        with output_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            with rasterio.open(tmp, "w", **profile) as dst:
                _describe(dst, band_names, tags, colormap, scale)
                yield dst
            if cog:
                rewrite_as_cog(tmp, "nearest" if colormap else "average", **({"NBITS": nbits} if nbits else {}))
            os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _writer_profile(grid: Grid, count: int, dtype: str | np.dtype, nodata: float | int | None, zlevel: int,
                    tiled: bool | None, nbits: int | None, num_threads: str | None,
                    palette: bool) -> dict[str, Any]:
    """The creation options of :func:`open_raster_writer`'s GeoTIFF: deflate, 256-px tiles when the grid
    holds one, BIGTIFF when GDAL thinks it safer."""
    if tiled is None:
        tiled = grid.width >= 256 and grid.height >= 256
    profile: dict[str, Any] = {
        "driver": "GTiff", "width": grid.width, "height": grid.height, "count": count,
        "dtype": np.dtype(dtype).name, "crs": grid.crs, "transform": grid.transform, "nodata": nodata,
        "compress": "deflate", "zlevel": zlevel, "tiled": tiled, "bigtiff": "IF_SAFER",
    }
    if zlevel == 0:  # stored as it is: a temporary file that a COG rewrite compresses anyway
        del profile["compress"], profile["zlevel"]
    if num_threads is not None:
        profile["num_threads"] = num_threads
    if tiled:
        profile.update(blockxsize=256, blockysize=256)
    if nbits:
        profile["nbits"] = nbits
    if palette:
        profile["photometric"] = "palette"
    return profile


def _describe(dst: rasterio.io.DatasetWriter, band_names: Sequence[str] | None, tags: dict[str, Any] | None,
              colormap: dict[int, tuple[int, int, int, int]] | None, scale: float | None) -> None:
    """Band names, tags, the band scale and the colour table, written before any pixel."""
    if colormap:  # before the pixels: GDAL cannot change the colour model once writing
        dst.write_colormap(1, colormap)
    for i, name in enumerate(band_names or [], start=1):
        dst.set_band_description(i, name)
    if scale is not None:
        dst.scales = (scale,) * dst.count
    if tags:
        dst.update_tags(**{k: str(v) for k, v in tags.items()})


class RowAppender:
    """Fills a raster opened for writing from the top down, a range of rows of any height at a time.

    Rows are held until they make whole tile rows (or reach the bottom of the raster), so that
    each tile is compressed and written once; a tile written in several pieces would be
    re-read and stored again each time. :meth:`finish` says whether every row arrived
    (``what`` names the raster in that error; by default the name of the file being written).
    """

    def __init__(self, dst: rasterio.io.DatasetWriter, what: str | None = None) -> None:
        self.dst, self.what = dst, what or Path(dst.name).name
        self.tile_height = dst.block_shapes[0][0]
        self.pending: list[np.ndarray] = []
        self.next_row = 0

    def write(self, rows: np.ndarray) -> None:
        """Append (count, n, width) rows below those written so far."""
        self.pending.append(rows)
        held = sum(p.shape[1] for p in self.pending)
        at_bottom = self.next_row + held == self.dst.height
        if held >= self.tile_height or at_bottom:
            data = np.concatenate(self.pending, axis=1) if len(self.pending) > 1 else self.pending[0]
            n = data.shape[1] if at_bottom else (held // self.tile_height) * self.tile_height
            self.dst.write(data[:, :n], window=Window(0, self.next_row, self.dst.width, n))
            self.next_row += n
            self.pending = [data[:, n:]] if n < data.shape[1] else []

    def finish(self) -> None:
        """Raise unless every row of the raster was written."""
        received = self.next_row + sum(p.shape[1] for p in self.pending)
        if received != self.dst.height:
            raise RuntimeError(f"{self.what}: {received} of {self.dst.height} rows written")


def rewrite_as_cog(path: str | Path, overview_resampling: str, **creation: Any) -> None:
    """Rewrite a finished GeoTIFF in place as a COG: GDAL's COG driver streams the copy,
    orders tiles and overviews for range requests, and keeps tags, colour table and nodata."""
    path = Path(path)
    tmp = temp_path(path.with_name(path.name + ".cog"))
    try:
        rasterio.shutil.copy(path, tmp, driver="COG", compress="deflate", overview_resampling=overview_resampling,
                             BIGTIFF="IF_SAFER", NUM_THREADS="ALL_CPUS", BLOCKSIZE=256, **creation)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
