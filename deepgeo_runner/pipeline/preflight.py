"""Checks that take milliseconds and save hours: before any heavy work, every output folder
takes files and every input file opens.

A read-only run or cache directory, a text file named ``.tif``, a truncated GeoTIFF or an
unreadable vector file otherwise fails deep inside a stage, minutes later, as a traceback.
Here each one becomes a :class:`~deepgeo_runner.core.errors.DeepGeoError` naming the config key,
the file and the fix. The leftovers of killed runs in the run directory are removed too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from deepgeo_runner.config.schema import DEMO_REFERENCE, RunConfig, assess_reference
from deepgeo_runner.config.validate import uses_datamodule
from deepgeo_runner.core.atomic import check_writable, remove_stale_temporaries
from deepgeo_runner.core.checkpoint_path import checkpoint_file
from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.raster_io import check_raster_readable
from deepgeo_runner.geo.scene_sources import scene_files

log = logging.getLogger(__name__)

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")  # as geo.rasterize (not imported: geopandas)


def _paths(value: Any) -> list[Path]:
    """The files of an image option: a path, a list of tiles, or a mapping date → path or tiles."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [p for tiles in value.values() for p in _paths(tiles)]
    if isinstance(value, str | Path):
        return [Path(value)]
    if isinstance(value, Sequence):
        return [Path(str(v)) for v in value]
    return [Path(str(value))]


def input_files(cfg: RunConfig) -> Iterator[tuple[str, Path, str]]:
    """(config key, path, 'raster' or 'vector') of every input file the run will read."""
    data, pred = cfg.data, cfg.predict
    if not uses_datamodule(data):
        for path in _paths(data.image):
            yield "data.image", path, "raster"
        if data.labels is not None:
            yield "data.labels", Path(data.labels), _kind(data.labels)
        for key in ("split_vector", "aoi"):
            if getattr(data, key) is not None:
                yield f"data.{key}", Path(getattr(data, key)), "vector"
        if data.chip_strategy == "points" and data.chip_points is not None:
            yield "data.chip_points", Path(data.chip_points), "vector"
        for split in ("val", "test"):
            files = getattr(data.split_scenes, split)
            for path in _paths(files.image):
                yield f"data.split_scenes.{split}.image", path, "raster"
            if files.labels is not None:
                yield f"data.split_scenes.{split}.labels", Path(files.labels), _kind(files.labels)
    for path in scene_files(pred.image):  # every scene's rasters (a list or a glob is several scenes)
        yield "predict.image", path, "raster"
    if pred.labels is not None:
        yield "predict.labels", Path(pred.labels), _kind(pred.labels)
    yield from _assess_files(cfg)


def _assess_files(cfg: RunConfig) -> Iterator[tuple[str, Path, str]]:
    """The assess stage's inputs (a CSV sample is read, and checked, by the stage itself)."""
    assess = cfg.assess
    for key in ("map", "strata"):
        if getattr(assess, key) is not None:
            yield f"assess.{key}", Path(getattr(assess, key)), "raster"
    reference = assess_reference(assess, cfg.data)  # 'auto': the demo's truth on the built-in demo, else none
    if reference is not None and reference != DEMO_REFERENCE:  # 'demo': generated with the demo scene
        yield "assess.reference", Path(reference), _kind(reference)
    if assess.sample is not None and Path(assess.sample).suffix.lower() not in (".csv", ".txt"):
        yield "assess.sample", Path(assess.sample), "vector"


def _kind(labels: Any) -> str:
    return "raster" if Path(str(labels)).suffix.lower() in RASTER_SUFFIXES else "vector"


def check_vector_readable(path: str | Path, key: str) -> None:
    """Open a vector dataset's metadata (no geometry is read); a damaged file fails naming ``key``."""
    import pyogrio

    try:
        pyogrio.read_info(str(path))
    except Exception as exc:  # noqa: BLE001 - pyogrio/GDAL raise several types for unreadable files
        raise InputDataError(
            f"cannot read {key} '{path}' as a vector file: {str(exc).rstrip('.')}. Check that it opens "
            f"(ogrinfo '{path}' or QGIS) and export it again if not (e.g. as GeoPackage .gpkg)."
        ) from exc


def check_inputs(cfg: RunConfig) -> None:
    """Open every input: headers, plus the first and last block of each raster (a truncated file)."""
    seen: set[Path] = set()
    for key, path, kind in input_files(cfg):
        if path in seen or not path.exists():  # a missing file is validate_config's to report
            continue
        seen.add(path)
        if kind == "raster":
            check_raster_readable(path, key)
            if not key.startswith("predict.image"):  # a new scene is classified on its own grid, CRS or not
                check_raster_crs(path, key)
        else:
            check_vector_readable(path, key)
    if cfg.predict.checkpoint is not None and ({"test", "predict"} & set(cfg.stages)):
        check_checkpoint_readable(checkpoint_file(cfg.predict.checkpoint))


def check_raster_crs(path: str | Path, key: str) -> None:
    """A raster the run aligns with others (labels, AOI, strata) must say where it lies: without a
    CRS, rasterize or the reprojection fails much later inside geopandas/GDAL with a traceback."""
    import rasterio

    with rasterio.open(path) as src:
        if src.crs is not None:
            return
        gcps = bool(src.gcps[0])
    fix = (f"it is georeferenced by ground control points only: warp it onto a grid first (gdalwarp -t_srs "
           f"EPSG:XXXX '{path}' out.tif)" if gcps else
           f"assign the CRS it was made in (gdal_edit.py -a_srs EPSG:XXXX '{path}', or in QGIS: Raster > "
           "Projections > Assign Projection)")
    raise InputDataError(f"{key} '{path}' has no CRS (coordinate reference system): {fix}, then run again.")


def check_checkpoint_readable(path: str | Path, key: str = "predict.checkpoint") -> None:
    """A checkpoint is a complete zip archive (torch.save's format): a truncated file (a full disk
    while saving) or another file named .ckpt is refused here, before any stage, not after them."""
    import zipfile

    path = Path(path)
    if path.suffix.lower() == ".onnx":  # a protobuf, not a zip: onnxruntime names a damaged one when it loads
        return
    try:
        complete = zipfile.is_zipfile(path)
    except OSError as exc:
        raise InputDataError(f"cannot read {key} '{path}': {exc.strerror or exc}.") from exc
    if not complete:
        raise InputDataError(
            f"{key} '{path}' is not a complete checkpoint (torch.save writes a zip archive; this one is truncated, "
            "e.g. by a full disk, or another kind of file): give another checkpoint (best.ckpt or last.ckpt of the "
            "run) or train again."
        )


def uses_cache(cfg: RunConfig) -> bool:
    """Whether the run reads or writes the stage cache (not for a datamodule, nor a checkpoint
    applied to a new scene alone)."""
    if uses_datamodule(cfg.data):
        return False
    return not (list(cfg.stages) == ["predict"] and cfg.predict.image is not None)


def preflight(cfg: RunConfig, run_dir: str | Path, run_dir_key: str = "hydra.run.dir") -> None:
    """Before heavy work: writable run and cache folders, no leftovers of killed runs, readable inputs.

    Args:
        cfg: the run's options (the validated config, typed).
        run_dir: the run directory; ``run_dir_key`` is the option that chose it, for messages.
    """
    run_dir = check_writable(run_dir, run_dir_key)
    if uses_cache(cfg):
        check_writable(Path(cfg.paths.cache_dir).expanduser(), "paths.cache_dir")
    remove_stale_temporaries(run_dir, depth=2)  # e.g. outputs of a predict killed half-way
    check_inputs(cfg)
