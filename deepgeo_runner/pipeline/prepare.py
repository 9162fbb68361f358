"""Stage ``prepare``: bands + spectral indices → a normalized stack on the image's own grid."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deepgeo_runner.errors import ConfigError
from deepgeo_runner.geo.indices import check_indices, compute_index
from deepgeo_runner.geo.normalize import NormStats, apply_stats, fit_stats
from deepgeo_runner.geo.raster_io import Grid, open_image, valid_mask, write_raster

log = logging.getLogger(__name__)

PREPARED_NODATA = -9999.0


@dataclass(frozen=True)
class PreparedScene:
    """The model-ready stack and what it takes to prepare another scene the same way."""

    path: Path
    feature_names: tuple[str, ...]
    stats: NormStats

    @property
    def n_features(self) -> int:
        return len(self.feature_names)


def prepare_scene(
    image: str | Path,
    out_dir: str | Path,
    band_names: Sequence[str],
    indices: Sequence[str],
    normalization: str,
    fit_area: np.ndarray | None,
    nodata: float | None = None,
    stats: NormStats | None = None,
) -> PreparedScene:
    """Read the image, append indices, normalize, write ``prepared.tif`` and ``stats.json``.

    Args:
        image: source GeoTIFF/COG (reflectance for indices to be meaningful).
        band_names: role of each band in file order; empty means 'band1..bandN'.
        indices: names from :data:`deepgeo_runner.geo.indices.INDICES`.
        normalization: 'standard' or 'none'.
        fit_area: (H, W) boolean map of the training area, where statistics are fitted.
        nodata: nodata of the image when the file declares none.
        stats: reuse these statistics (e.g. a checkpoint's) instead of fitting new ones.
    """
    source = open_image(image, nodata)
    n_bands = source.sizes["band"]
    names = list(band_names) or [f"band{i}" for i in range(1, n_bands + 1)]
    if len(names) != n_bands:
        raise ConfigError(
            f"data.band_names lists {len(names)} bands {names} but '{image}' has {n_bands}: "
            "name every band in file order."
        )
    check_indices(indices, names)
    file_nodata = source.rio.nodata
    bands = source.values.astype(np.float32)
    valid = valid_mask(bands, file_nodata)
    roles = dict(zip(names, bands, strict=True))
    layers = [bands] + [
        compute_index(name, roles, valid, PREPARED_NODATA)[None] for name in indices
    ]
    stack = np.concatenate(layers, axis=0)
    valid &= np.all(stack != PREPARED_NODATA, axis=0)  # zero denominators → nodata too
    if stats is None:
        fit_mask = valid if fit_area is None else (valid & fit_area)
        stats = fit_stats(stack, fit_mask, normalization)
    prepared = apply_stats(stack, stats)
    prepared[:, ~valid] = PREPARED_NODATA
    grid = Grid(source.rio.crs, source.rio.transform(), source.rio.width, source.rio.height)
    out_dir = Path(out_dir)
    feature_names = tuple(names) + tuple(indices)
    path = write_raster(out_dir / "prepared.tif", prepared, grid, PREPARED_NODATA, feature_names)
    (out_dir / "stats.json").write_text(
        json.dumps({"features": list(feature_names), **stats.to_dict()}, indent=2)
    )
    log.info("prepare: %d bands + %d indices, %.1f%% valid pixels", n_bands, len(indices),
             100 * valid.mean())
    return PreparedScene(path, feature_names, stats)


def load_prepared(entry: str | Path) -> PreparedScene:
    """The PreparedScene stored in a cache entry written by :func:`prepare_scene`."""
    entry = Path(entry)
    meta = json.loads((entry / "stats.json").read_text())
    return PreparedScene(entry / "prepared.tif", tuple(meta["features"]), NormStats.from_dict(meta))
