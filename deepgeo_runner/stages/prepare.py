"""Stage ``prepare``: bands + spectral indices → a normalized stack on the image's own grid.

The scene is processed in square windows, in two passes, so that a scene larger than memory
is prepared with bounded memory: pass 1 fits the normalization statistics on the training
area (streaming, see :class:`deepgeo_runner.geo.normalize.StatsAccumulator`), pass 2 writes
the normalized windows into a tiled, deflate-compressed GeoTIFF. A scene that fits in one
window is read once. Mosaics, crops and reprojection happen before, in
:mod:`deepgeo_runner.geo.scene`, so this stage always reads one raster.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.windows import Window

from deepgeo_runner.core.atomic import write_text_atomic
from deepgeo_runner.core.console import progress as progress_bar
from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.indices import IndexSpec, check_indices, feature_index_names, finish_index
from deepgeo_runner.geo.nodata import Nodata
from deepgeo_runner.geo.normalize import (
    NormOptions,
    NormStats,
    apply_stats,
    needs_fit,
    new_accumulator,
    stats_from_accumulator,
)
from deepgeo_runner.geo.raster_io import Grid, iter_windows, open_raster_writer, reading

log = logging.getLogger(__name__)

PREPARED_NODATA = -9999.0
DEFAULT_WINDOW = 1024  # px side of a processing window: ~4 MB per float32 feature
GDAL_CACHE_MB = 128  # GDAL's block cache otherwise grows to 5 % of the machine's memory

FitArea = np.ndarray | Callable[[Window], np.ndarray] | None


@dataclass(frozen=True)
class PreparedScene:
    """The model-ready stack and what it takes to prepare another scene the same way."""

    path: Path
    feature_names: tuple[str, ...]
    stats: NormStats
    dates: tuple[str, ...] = ()  # of a date-major multi-date stack

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


def per_band_values(value: float | Sequence[float] | None, n: int, key: str, default: float) -> np.ndarray:
    """One number, or one per band, as one float32 per band of ``n`` (``data.scale``/``data.offset``)."""
    if value is None:
        return np.full(n, default, dtype=np.float32)
    arr = np.atleast_1d(np.asarray(value, dtype=np.float32))
    if arr.size == 1:
        return np.full(n, arr[0], dtype=np.float32)
    if arr.size != n:
        raise ConfigError(f"{key} has {arr.size} values for {n} bands: give one number or one per band.")
    return arr


@dataclass
class _Features:
    """Computes the feature stack of one window: per date, scaled bands (kept ones) then indices.

    A multi-date stack holds the dates date-major (all bands of date 1, then date 2, ...); the
    indices of each date are computed from that date's bands and placed after them, so the
    output stays date-major and a temporal network can split it into equal per-date groups.
    """

    names: list[str]  # band roles of one date
    keep: list[int]
    specs: list[IndexSpec]
    nodata: Nodata  # a value overriding the file's nodata (None: the file's mask or nodata), and the rule
    scale: np.ndarray  # per band of one date
    offset: np.ndarray
    dates: int = 1

    @property
    def per_date(self) -> int:
        return len(self.keep) + len(self.specs)

    @property
    def kept_names(self) -> list[str]:
        return [self.names[i] for i in self.keep]

    def __call__(self, src: rasterio.io.DatasetReader, window: Window) -> tuple[np.ndarray, np.ndarray]:
        with reading(src.name, "image"):
            raw = src.read(window=window)
        return self.compute(raw, self.nodata.valid(src, raw, window, dates=self.dates))

    def compute(self, raw: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The features (per_date·dates, h, w) float32 of the raw bands ``raw`` (dates·bands, h, w), and
        ``valid`` (updated in place) without the pixels whose indices are undefined. Also what streaming a
        new scene computes on the CPU (:mod:`deepgeo_runner.stages.raw_scene`): the same map by construction."""
        n = len(self.names)
        out = np.empty((self.per_date * self.dates,) + valid.shape, dtype=np.float32)
        for d in range(self.dates):
            bands = raw[d * n:(d + 1) * n].astype(np.float32)
            if (self.scale != 1).any() or (self.offset != 0).any():
                bands *= self.scale[:, None, None]
                bands += self.offset[:, None, None]
            roles = dict(zip(self.names, bands, strict=True))
            base = d * self.per_date
            out[base:base + len(self.keep)] = bands[self.keep]
            for i, spec in enumerate(self.specs, start=base + len(self.keep)):
                with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                    values = spec.compute(roles)
                out[i] = finish_index(np.broadcast_to(values, valid.shape), valid, PREPARED_NODATA)
                valid &= out[i] != PREPARED_NODATA  # zero denominators → nodata too
        return out, valid


def feature_stack_names(per_date: Sequence[str], dates: Sequence[str]) -> tuple[str, ...]:
    """The names of the prepared bands: ``per_date`` once, or ``<date>_<name>`` for each date."""
    if len(dates) <= 1:
        return tuple(per_date)
    return tuple(f"{date}_{name}" for date in dates for name in per_date)


def _fit_mask(fit_area: FitArea, window: Window) -> np.ndarray | None:
    if fit_area is None:
        return None
    if callable(fit_area):
        return np.asarray(fit_area(window), dtype=bool)
    return np.asarray(fit_area[window.toslices()], dtype=bool)


@dataclass(frozen=True)
class PrepareOptions:
    """How a scene becomes a model-ready stack: what :func:`prepare_scene` makes of its raster.

    Attributes:
        band_names: role of each band in file order; empty means 'band1..bandN'.
        indices: names of :func:`deepgeo_runner.geo.indices.resolve_index` (ours, the user's
            expressions, the spyndex catalogue).
        normalization: a method name of :data:`deepgeo_runner.geo.normalize.METHODS` or
            :class:`NormOptions`.
        nodata: which pixels hold no data (:class:`~deepgeo_runner.geo.nodata.Nodata`: a value
            overriding what the file declares and its mask band, and the rule, 'gdal' or 'any_band').
        expressions: user indices, name → arithmetic over band names; computed after
            ``indices`` unless listed there.
        index_constants: constants of catalogue indices (e.g. ``{"L": 0.5}``).
        scale, offset: reflectance = DN * scale + offset, one number or one per band, applied
            before indices (e.g. Landsat Collection 2 L2: 0.0000275 and -0.2).
        keep_bands: bands kept in the stack (all by default); the others still feed indices.
        dates: the dates of a date-major multi-date stack; ``band_names``, ``scale``, ``offset``
            and the indices then describe one date, and every date gets its own indices.
        window: side of the processing windows in pixels (memory ∝ window²).
        cog: write a Cloud-Optimized GeoTIFF with overviews (quick to browse in QGIS; costs one
            more compression pass over the stack).
        progress: show progress bars on scenes of four windows or more.
    """

    band_names: Sequence[str] = ()
    indices: Sequence[str] = ()
    normalization: str | NormOptions = "standard"
    nodata: Nodata = Nodata()
    expressions: Mapping[str, str] | None = None
    index_constants: Mapping[str, float] | None = None
    scale: float | Sequence[float] | None = None
    offset: float | Sequence[float] | None = None
    keep_bands: Sequence[str] | None = None
    dates: Sequence[str] = ()
    window: int = DEFAULT_WINDOW
    cog: bool = False
    progress: bool = True

    @property
    def norm(self) -> NormOptions:
        """The normalization as :class:`NormOptions` (a method name gets its defaults)."""
        norm = self.normalization
        return norm if isinstance(norm, NormOptions) else NormOptions(norm)


def prepare_scene(image: str | Path, out_dir: str | Path, options: PrepareOptions, fit_area: FitArea = None,
                  stats: NormStats | None = None) -> PreparedScene:
    """Read the image, append indices, normalize, write ``prepared.tif`` and ``stats.json``.

    Args:
        image: source GeoTIFF/COG (reflectance for indices to be meaningful), any dtype.
        options: the bands, indices, normalization, nodata and windows (:class:`PrepareOptions`).
        fit_area: (H, W) boolean map of the training area, or a function window → that map
            for the window (bounded memory on huge scenes); None: every valid pixel.
        stats: reuse these statistics (e.g. a checkpoint's) instead of fitting new ones.
    """
    norm = options.norm
    norm.check()
    image = Path(image)
    if not image.is_file():
        raise InputDataError(f"image file not found: '{image}'. Set data.image to an existing GeoTIFF.")
    out_dir = Path(out_dir)
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB * 1024 * 1024), _open(image) as src:
        features, index_names = _feature_maker(src, image, options)
        feature_names = feature_stack_names(tuple(features.kept_names) + tuple(index_names), options.dates)
        grid = Grid(src.crs, src.transform, src.width, src.height)
        pass_ = _Pass(src, features, iter_windows(src.height, src.width, options.window), options.progress)
        if stats is None:
            stats = _fit_stats(pass_, fit_area, len(feature_names), norm)
        elif len(stats.shift) != len(feature_names):
            raise ConfigError(
                f"the given statistics are for {len(stats.shift)} features but this preparation makes "
                f"{len(feature_names)} {list(feature_names)}: use the same bands and indices."
            )
        valid_count = _write_stack(pass_, out_dir / "prepared.tif", grid, feature_names, stats, options.cog)
    _write_stats(out_dir / "stats.json", feature_names, options.dates, stats, features)
    log.info("prepare: %d dates x (%d bands + %d indices), %s normalization, %.1f%% valid pixels", features.dates,
             len(features.keep), len(index_names), stats.method,
             100 * valid_count / max(grid.width * grid.height, 1))
    return PreparedScene(out_dir / "prepared.tif", feature_names, stats, tuple(options.dates))


def _band_roles(src: rasterio.io.DatasetReader, image: Path, options: PrepareOptions) -> tuple[list[str], int]:
    """The role of each band of one date, and the number of dates: checked against the raster, so that a
    wrong band list fails naming both counts rather than mislabelling features."""
    n_dates = max(len(options.dates), 1)
    if src.count % n_dates:
        raise InputDataError(
            f"'{image}' has {src.count} bands, which do not split into {n_dates} dates "
            "of equal band count."
        )
    n_bands = src.count // n_dates
    names = list(options.band_names) or [f"band{i}" for i in range(1, n_bands + 1)]
    if len(names) != n_bands:
        per = " per date" if n_dates > 1 else ""
        raise ConfigError(
            f"data.band_names lists {len(names)} bands {names} but '{image}' has {n_bands}{per}: "
            f"name every band{per} in file order (or set data.sensor)."
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"data.band_names={names}: every band needs a distinct name.")
    return names, n_dates


def _feature_maker(src: rasterio.io.DatasetReader, image: Path,
                   options: PrepareOptions) -> tuple[_Features, list[str]]:
    """What computes a window's features, and the names of the indices among them: every band and
    index name is checked here, before the first window is read."""
    names, n_dates = _band_roles(src, image, options)
    return feature_maker(names, n_dates, options)


def feature_maker(names: list[str], n_dates: int, options: PrepareOptions) -> tuple[_Features, list[str]]:
    """:func:`prepare_scene`'s feature computation for bands ``names`` (one date's roles, in file order) and
    ``n_dates`` dates, and the names of its indices; index and kept-band names checked."""
    index_names = feature_index_names(options.indices, options.expressions)
    specs = check_indices(index_names, names, options.expressions, options.index_constants)
    keep = list(options.keep_bands) if options.keep_bands is not None else names
    unknown = [b for b in keep if b not in names]
    if unknown:
        raise ConfigError(f"preprocessing.keep_bands: {unknown} are not among data.band_names {names}.")
    n_bands = len(names)
    features = _Features(
        names, [names.index(b) for b in keep], specs, options.nodata,
        per_band_values(options.scale, n_bands, "data.scale", 1.0),
        per_band_values(options.offset, n_bands, "data.offset", 0.0),
        n_dates,
    )
    return features, index_names


@dataclass
class _Pass:
    """One walk over the scene's windows; a scene of one window keeps what the first pass computed,
    so that it is read once."""

    src: rasterio.io.DatasetReader
    features: _Features
    windows: list[Window]
    progress: bool
    cached: tuple[np.ndarray, np.ndarray] | None = None

    def bar(self, desc: str) -> Any:
        return progress_bar(self.windows, desc=desc, unit="window",
                            disable=not self.progress or len(self.windows) < 4)

    def read(self, win: Window) -> tuple[np.ndarray, np.ndarray]:
        if self.cached is not None:
            return self.cached
        return self.features(self.src, win)


def _fit_stats(pass_: _Pass, fit_area: FitArea, n_features: int, norm: NormOptions) -> NormStats:
    """Pass 1: the normalization statistics, streamed over the training area's valid pixels (pixels
    carry their flat index, so that a sample drawn from them does not depend on the windows)."""
    acc = None
    if needs_fit(norm.method):
        acc = new_accumulator(n_features, norm)
        width = pass_.src.width
        for win in pass_.bar("prepare: statistics"):
            fit = _fit_mask(fit_area, win)
            if fit is not None and not fit.any():
                continue
            stack, valid = pass_.features(pass_.src, win)
            if len(pass_.windows) == 1:
                pass_.cached = stack, valid
            mask = valid if fit is None else valid & fit
            rows = np.arange(win.row_off, win.row_off + win.height, dtype=np.uint64)
            cols = np.arange(win.col_off, win.col_off + win.width, dtype=np.uint64)
            flat = rows[:, None] * np.uint64(width) + cols[None, :]
            acc.update(stack, mask, flat)
    return stats_from_accumulator(acc, n_features, norm)


def _write_stack(pass_: _Pass, path: Path, grid: Grid, feature_names: Sequence[str], stats: NormStats,
                 cog: bool) -> int:
    """Pass 2: every window normalized and written, nodata where the input had none; returns the
    number of valid pixels (for the log line)."""
    valid_count = 0
    tags = {"normalization": stats.method, "per_chip": stats.per_chip}
    with open_raster_writer(path, grid, len(feature_names), "float32",
                            PREPARED_NODATA, feature_names, tags, cog=cog) as dst:
        for win in pass_.bar("prepare: writing"):
            stack, valid = pass_.read(win)
            out = apply_stats(stack, stats)
            del stack
            out[:, ~valid] = PREPARED_NODATA
            dst.write(out, window=win)
            valid_count += int(valid.sum())
    return valid_count


def _write_stats(path: Path, feature_names: Sequence[str], dates: Sequence[str], stats: NormStats,
                 features: _Features) -> None:
    """``stats.json``: what it takes to prepare another scene the same way (:func:`load_prepared`)."""
    meta = {"features": list(feature_names), "dates": list(dates), **stats.to_dict(),
            "reflectance_scale": features.scale.tolist(), "reflectance_offset": features.offset.tolist(),
            "index_sources": {s.name: s.source for s in features.specs}}
    write_text_atomic(path, json.dumps(meta, indent=2))


def _open(image: Path) -> rasterio.io.DatasetReader:
    with reading(image, "image"):
        src = rasterio.open(image)
    if src.crs is None:
        src.close()
        raise InputDataError(
            f"image '{image}' has no CRS: georeference it first (e.g. gdal_edit.py -a_srs EPSG:XXXX)."
        )
    return src




def load_prepared(entry: str | Path) -> PreparedScene:
    """The PreparedScene stored in a cache entry written by :func:`prepare_scene`."""
    entry = Path(entry)
    meta = json.loads((entry / "stats.json").read_text())
    return PreparedScene(entry / "prepared.tif", tuple(meta["features"]), NormStats.from_dict(meta),
                         tuple(meta.get("dates", ())))
