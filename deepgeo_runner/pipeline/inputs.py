"""The run's input rasters: the demo scene or the user's, on the analysis grid (mosaic, time
stack, crop, reprojection; cached), band roles, and the other scenes that supply val/test.

Where a change goes: how ``data.image`` becomes one raster on one grid, and checks of the
split scenes' bands and pixel sizes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from deepgeo_runner.config.schema import DataConfig, RunConfig, SceneFiles
from deepgeo_runner.core.cache import CACHE_VERSION, cache_entry, file_fingerprint, vector_fingerprint
from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.chips import SPLITS
from deepgeo_runner.geo.demo import make_demo_scene
from deepgeo_runner.geo.scene import SceneOptions, all_tiles, build_time_stack, date_groups
from deepgeo_runner.geo.sensors import sensor_band_names
from deepgeo_runner.pipeline.artifacts import Artifacts
from deepgeo_runner.pipeline.stage_options import scene_nodata, stack_dates

log = logging.getLogger(__name__)


def demo_dir(cache_dir: Path, data: DataConfig) -> Path:
    """Where the demo scene of ``data.demo_size`` is generated (once) in the cache."""
    return Path(cache_dir) / "demo" / f"v{CACHE_VERSION}-{data.demo_size}"


def demo_reference(cache_dir: Path, data: DataConfig) -> Path:
    """The demo scene's wall-to-wall reference layer (``assess.reference=demo``), generated if needed."""
    return make_demo_scene(demo_dir(cache_dir, data), size=int(data.demo_size), seed=0).reference


def resolve_inputs(opts: RunConfig, cache_dir: Path, art: Artifacts) -> None:
    data = opts.data
    if data.name == "demo" and data.image is None:
        scene = make_demo_scene(demo_dir(cache_dir, data), size=int(data.demo_size), seed=0)
        art.image, art.labels_source = scene.image, scene.labels
        art.band_names = list(data.band_names) or list(scene.band_names)
    else:
        art.labels_source = Path(data.labels)
        art.image = analysis_image(opts, cache_dir, art)
        art.band_names = list(data.band_names)
    if not art.band_names and data.sensor:
        with rasterio.open(art.image) as src:
            art.band_names = sensor_band_names(str(data.sensor), src.count // max(len(stack_dates(data)), 1))


def analysis_image(opts: RunConfig, cache_dir: Path, art: Artifacts) -> Path:
    """The input raster itself, or (mosaic / time stack / crop / AOI / reprojection) a cached
    scene on the analysis grid, so that every later stage reads one raster on one grid."""
    art.image_sources = date_groups(opts.data.image)
    return on_analysis_grid(opts, cache_dir, art, art.image_sources, crop=True, key="scene")


def on_analysis_grid(opts: RunConfig, cache_dir: Path, art: Artifacts, groups: dict[str, list[Path]],
                      crop: bool, key: str) -> Path:
    """``groups`` (date → tiles) mosaicked/stacked/reprojected as ``data`` asks; cropped (bbox,
    AOI) only when ``crop``: another scene of a split keeps its own extent but takes
    ``data.crs``/``data.resolution``."""
    data = opts.data
    res = data.resolution
    if res is not None:
        res = [float(res)] * 2 if isinstance(res, int | float) else [float(r) for r in res]
    options = SceneOptions(
        bbox=tuple(data.bbox) if crop and data.bbox is not None else None,
        aoi=data.aoi if crop else None, crs=data.crs, resolution=tuple(res) if res else None,
        resampling=str(data.resampling), nodata=scene_nodata(data),
    )
    tiles = all_tiles(groups)
    if len(groups) == 1 and options.is_identity(len(tiles)):
        return tiles[0]
    payload = {
        "v": CACHE_VERSION, "images": [file_fingerprint(p) for p in tiles],
        "bbox": list(options.bbox) if options.bbox else None,
        "aoi": vector_fingerprint(options.aoi) if options.aoi else None,
        "crs": options.crs, "resolution": res, "resampling": options.resampling, "nodata": options.nodata,
    }
    if len(groups) > 1:
        payload["dates"] = {d: [file_fingerprint(p) for p in paths] for d, paths in groups.items()}

    def build(tmp: Path) -> None:
        build_time_stack(groups, tmp / "scene.tif", options, window=int(opts.preprocessing.window))

    entry, cache_key, reused = cache_entry(cache_dir, "scene", payload, build, True)
    art.cache_keys[key], art.reused[key] = cache_key, reused
    return entry / "scene.tif"


def check_split_scenes(opts: RunConfig, art: Artifacts) -> None:
    """Cheap checks of the other scenes (readable, georeferenced, same bands, same pixel size)."""
    with rasterio.open(art.image) as src:
        n_bands, res, train_crs = src.count, src.res, src.crs
    n_dates = max(len(stack_dates(opts.data)), 1)
    for split, files in external_splits(opts).items():
        key = f"data.split_scenes.{split}.image"
        count = 0
        for path in first_per_date(files.image):
            try:
                with rasterio.open(path) as src:
                    count, crs, other_res = count + src.count, src.crs, src.res
            except rasterio.errors.RasterioError as exc:
                raise InputDataError(f"{key}='{path}': cannot read it as a raster: {exc}") from exc
            if crs is None:
                raise InputDataError(f"{key}='{path}' has no CRS: georeference it (gdal_edit.py -a_srs EPSG:XXXX).")
        if count != n_bands:
            dates = f" over {n_dates} dates" if n_dates > 1 else ""
            raise InputDataError(
                f"{key}='{files.image}' has {count} bands{dates} but the training scene has {n_bands}: "
                "give a scene with the same bands (and dates) in the same order."
            )
        if opts.data.resolution is None and crs == train_crs and not np.allclose(other_res, res):
            log.warning("%s has %s m pixels, the training scene %s m: set data.resolution to chip both alike.",
                        key, tuple(round(r, 3) for r in other_res), tuple(round(r, 3) for r in res))


def first_per_date(image: Any) -> list[Path]:
    """One raster per date of an image option (tiles of a date share its bands)."""
    return [paths[0] for paths in date_groups(image).values()]


def external_splits(opts: RunConfig) -> dict[str, SceneFiles]:
    """Splits whose chips all come from another scene (``data.split_scenes``), in split order."""
    scenes = opts.data.split_scenes
    return {s: getattr(scenes, s) for s in ("val", "test") if getattr(scenes, s).image}


def local_splits(opts: RunConfig) -> tuple[str, ...]:
    """Splits cut from the training scene itself."""
    external = external_splits(opts)
    return tuple(s for s in SPLITS if s not in external)
