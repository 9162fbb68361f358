"""The task layer: the only place that reads the config tree and chains the stages.

It is safe to run again in the same run directory: Lightning relaunches the whole command
for DDP ranks > 0, so every rank passes through here. Expensive stages come from the cache
(built by rank 0 before the ranks start), and only rank 0 writes files shared by the run.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from omegaconf import DictConfig, ListConfig, OmegaConf

from deepgeo_runner.atomic import write_text_atomic
from deepgeo_runner.cache import cached_stage, file_fingerprint, hash_payload, reuse_entry, vector_fingerprint
from deepgeo_runner.checkpoint_path import checkpoint_file
from deepgeo_runner.config.validate import DATAMODULE_STAGES, uses_datamodule, validate_config
from deepgeo_runner.errors import ConfigError, DeepGeoError, InputDataError, RunInterrupted
from deepgeo_runner.geo.chips import CLASS_SPLIT_VERSION, SPLITS
from deepgeo_runner.geo.raster_io import Grid
from deepgeo_runner.geo.scene import all_tiles, date_groups
from deepgeo_runner.metrics import strict_json
from deepgeo_runner.pipeline.chips import (
    ChipPlan,
    ChipStore,
    SplitScene,
    build_chip_store,
    load_chip_store,
    split_class_counts,
    target_lut,
)
from deepgeo_runner.pipeline.instantiators import instantiate as _instantiate
from deepgeo_runner.pipeline.instantiators import instantiate_callbacks, instantiate_logger
from deepgeo_runner.pipeline.labels import rasterize_labels
from deepgeo_runner.pipeline.prepare import PreparedScene, load_prepared, prepare_scene
from deepgeo_runner.provenance import write_provenance

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when a stage's output format changes (2: GDAL nodata rule, labels on the image grid)
DEFAULT_PALETTE = ["#1b7837", "#d6604d", "#2166ac", "#fdb863", "#8073ac", "#35978f",
                   "#e08214", "#b2abd2", "#c51b7d", "#7fbc41"]


def global_rank() -> int:
    """This process's rank, known from the environment even before Lightning starts."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0


@dataclass
class ClassTable:
    """The model's outputs: their names, the ids written in class maps, and colours."""

    names: list[str]
    ids: list[int]
    colors: list[str]
    background_is_class: bool
    n_classes: int  # classes of interest (without background)

    @classmethod
    def from_config(cls, data: DictConfig) -> ClassTable:
        classes = list(data.classes)
        colors = list(data.class_colors) if data.class_colors else DEFAULT_PALETTE[: len(classes)]
        colors += DEFAULT_PALETTE[len(colors) : len(classes)] or ["#888888"] * (len(classes) - len(colors))
        if uses_datamodule(data):  # the classes are the mask values 0..K-1 themselves
            return cls(classes, list(range(len(classes))), colors, False, len(classes))
        if data.background == "class":
            return cls(["background"] + classes, list(range(len(classes) + 1)),
                       ["#000000"] + colors, True, len(classes))
        return cls(classes, list(range(1, len(classes) + 1)), colors, False, len(classes))


@dataclass
class Artifacts:
    """What the stages produced so far, for the later ones and for provenance."""

    image: Path | None = None
    labels_source: Path | None = None
    image_sources: dict[str, list[Path]] = field(default_factory=dict)  # date → rasters a built scene came from
    band_names: list[str] = field(default_factory=list)
    prepared: PreparedScene | None = None
    labels: Path | None = None
    chips: ChipStore | None = None
    checkpoint: Path | None = None
    metrics: dict | None = None
    best_score: float | None = None  # best validation score (train.monitor) of the fit: a sweep's objective
    prediction: Path | None = None
    prepare_extras: dict[str, Any] = field(default_factory=dict)
    split_scenes: dict[str, SplitScene] = field(default_factory=dict)  # val/test from other scenes
    input_profile: dict[str, Any] | None = None  # the training image's bands, dtype, percentiles (drift checks)
    cache_keys: dict[str, str] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    status: str = "running"  # → "completed", or "interrupted" (SIGINT/SIGTERM) / "failed" during training
    error: str | None = None  # why training stopped, when it did not complete


def run(cfg: DictConfig, run_dir: str | Path) -> Artifacts:
    """Run the configured stages of the cycle; return what they produced."""
    from deepgeo_runner.preflight import preflight

    validate_config(cfg)
    run_dir = Path(run_dir)
    preflight(cfg, run_dir)  # writable run/cache folders, leftovers of killed runs removed, inputs opened
    rank = global_rank()
    stages = _stages(cfg)
    art = Artifacts()
    cache_dir = Path(cfg.paths.cache_dir).expanduser()
    classes = ClassTable.from_config(cfg.data)
    if rank == 0:
        _provenance(cfg, run_dir, art, classes)

    def timed(name: str, fn, *args):
        start = time.perf_counter()
        result = fn(*args)
        art.timings[name] = round(time.perf_counter() - start, 2)
        return result

    if uses_datamodule(cfg.data):
        log.info("data=%s: running stages %s on %s", cfg.data.name, stages, cfg.data.datamodule._target_)
        timed("fit_test", _learn_datamodule, cfg, run_dir, art, classes, stages)
        art.status = "completed"
        if rank == 0:
            _provenance(cfg, run_dir, art, classes)
        return art
    if stages == ["predict"] and cfg.predict.get("image"):  # a checkpoint applied to a new scene
        if rank == 0:
            timed("predict", apply_checkpoint_stage, cfg, run_dir, art)
            art.status = "completed"
            _provenance(cfg, run_dir, art, classes)
        return art
    split_polygons = _read_split_polygons(cfg)  # a bad split file fails before any raster work
    timed("inputs", _resolve_inputs, cfg, cache_dir, art)
    _check_split_scenes(cfg, art)
    timed("rasterize", _rasterize, cfg, cache_dir, art, classes)  # on the image grid: cheap, the split needs it
    split_map = timed("split", _split_map, cfg, art, classes, split_polygons)
    timed("check", _data_check, cfg, run_dir, art, classes, split_map, rank)
    if stages == ["check"]:
        if rank == 0:
            _provenance(cfg, run_dir, art, classes)
        return art
    if set(stages) - {"check", "rasterize"}:
        timed("prepare", _prepare, cfg, cache_dir, art, split_map, "prepare" in stages)
    needs_chips = bool({"chips", "fit", "test"} & set(stages))
    if _external_splits(cfg) and (needs_chips or "prepare" in stages):
        timed("split_scenes", _prepare_split_scenes, cfg, cache_dir, art, classes,
              "prepare" in stages, "rasterize" in stages)
    if needs_chips:
        timed("chips", _chips, cfg, cache_dir, art, classes, split_map, "chips" in stages)
    if {"fit", "test", "predict"} & set(stages):
        timed("fit_test_predict", _learn, cfg, run_dir, art, classes, stages, rank)
    if rank == 0 and "report" in stages:
        from deepgeo_runner.pipeline.report import write_report

        timed("report", write_report, run_dir, art, classes, cfg.data.band_names)
    art.status = "completed"
    if rank == 0:
        _provenance(cfg, run_dir, art, classes)
    return art


def _stages(cfg: DictConfig) -> list[str]:
    """The stages to run: of the whole cycle, a datamodule's chips take only fit and test (validated)."""
    stages = list(cfg.stages)
    return [s for s in stages if s in DATAMODULE_STAGES] if uses_datamodule(cfg.data) else stages


def _provenance(cfg: DictConfig, run_dir: Path, art: Artifacts, classes: ClassTable) -> None:
    inputs = {}
    files = [("image", art.image), ("labels", art.labels_source)]
    for split, scene in _external_splits(cfg).items():
        for date, paths in date_groups(scene.image).items():
            key = f"split_scenes.{split}.image" + (f".{date}" if date else "")
            files += [(key + (f"[{i}]" if len(paths) > 1 else ""), path) for i, path in enumerate(paths)]
        files.append((f"split_scenes.{split}.labels", Path(scene.labels)))
    for name, path in files:
        if path is not None:
            inputs[name] = {"path": str(path), "sha256": file_fingerprint(path)}
    tiles = all_tiles(art.image_sources)
    if tiles and tiles != [art.image]:  # mosaic / time stack / crop: the rasters it came from
        inputs["image_sources"] = [
            {"date": date or None, "path": str(p), "sha256": file_fingerprint(p)}
            for date, paths in art.image_sources.items() for p in paths
        ]
    write_provenance(
        run_dir / "provenance.json",
        int(cfg.seed),
        {
            "run_dir": str(run_dir.resolve()),
            "stages": _stages(cfg),
            "inputs": inputs,
            "cache_dir": str(Path(cfg.paths.cache_dir).expanduser()),
            "cache_keys": art.cache_keys,
            "cache_reused": art.reused,
            "classes": {"names": classes.names, "ids": classes.ids},
            "checkpoint": str(art.checkpoint) if art.checkpoint else None,
            "timings_s": art.timings,
            "status": art.status,
            **({"error": art.error} if art.error else {}),
        },
    )


def _resolve_inputs(cfg: DictConfig, cache_dir: Path, art: Artifacts) -> None:
    data = cfg.data
    if data.name == "demo" and data.image is None:
        from deepgeo_runner.geo.demo import make_demo_scene

        demo_dir = cache_dir / "demo" / f"v{CACHE_VERSION}-{data.demo_size}"
        scene = make_demo_scene(demo_dir, size=int(data.demo_size), seed=0)
        art.image, art.labels_source = scene.image, scene.labels
        art.band_names = list(data.band_names) or list(scene.band_names)
    else:
        art.labels_source = Path(data.labels)
        art.image = _analysis_image(cfg, cache_dir, art)
        art.band_names = list(data.band_names)
    if not art.band_names and data.get("sensor"):
        from deepgeo_runner.geo.sensors import sensor_band_names

        with rasterio.open(art.image) as src:
            art.band_names = sensor_band_names(str(data.sensor), src.count // max(len(stack_dates(data)), 1))


def stack_dates(data: DictConfig) -> list[str]:
    """The dates of the stack, in band order: the keys of a ``data.image`` mapping, else ``data.dates``."""
    if isinstance(data.get("image"), DictConfig):
        return [str(d) for d in data.image.keys()]
    return [str(d) for d in (data.get("dates") or [])]


def _analysis_image(cfg: DictConfig, cache_dir: Path, art: Artifacts) -> Path:
    """The input raster itself, or (mosaic / time stack / crop / AOI / reprojection) a cached
    scene on the analysis grid, so that every later stage reads one raster on one grid."""
    art.image_sources = date_groups(cfg.data.image)
    return _on_analysis_grid(cfg, cache_dir, art, art.image_sources, crop=True, key="scene")


def _on_analysis_grid(cfg: DictConfig, cache_dir: Path, art: Artifacts, groups: dict[str, list[Path]],
                      crop: bool, key: str) -> Path:
    """``groups`` (date → tiles) mosaicked/stacked/reprojected as ``data`` asks; cropped (bbox,
    AOI) only when ``crop``: another scene of a split keeps its own extent but takes
    ``data.crs``/``data.resolution``."""
    from deepgeo_runner.geo.scene import SceneOptions, build_time_stack

    data = cfg.data
    res = data.get("resolution")
    if res is not None:
        res = [float(res)] * 2 if isinstance(res, int | float) else [float(r) for r in res]
    options = SceneOptions(
        bbox=tuple(data.bbox) if crop and data.get("bbox") is not None else None,
        aoi=data.get("aoi") if crop else None, crs=data.get("crs"), resolution=tuple(res) if res else None,
        resampling=str(data.get("resampling", "nearest")), nodata=_scene_nodata(data),
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
        build_time_stack(groups, tmp / "scene.tif", options, window=int(cfg.preprocessing.get("window", 1024)))

    entry, cache_key, reused = _entry(cache_dir, "scene", payload, build, True)
    art.cache_keys[key], art.reused[key] = cache_key, reused
    return entry / "scene.tif"


def _scene_nodata(data: DictConfig) -> float | None:
    """One nodata value for a mosaic, crop or reprojection (GDAL's warper takes one per source)."""
    nodata = _plain(data.nodata)
    if not isinstance(nodata, list):
        return nodata
    if len(set(nodata)) == 1:
        return nodata[0]
    raise ConfigError(f"data.nodata={nodata}: a per-band nodata list works on one image used as it is; "
                      "a mosaic, crop (data.bbox/aoi) or reprojection needs one value for every band.")


def _read_split_polygons(cfg: DictConfig) -> gpd.GeoDataFrame | None:
    """The checked polygons of ``data.split_vector``, or None when the scene is split by blocks."""
    if cfg.data.get("split_vector") is None:
        return None
    from deepgeo_runner.geo.split_vector import read_split_polygons

    polygons = read_split_polygons(cfg.data.split_vector, str(cfg.data.split_column))
    clash = sorted(set(_external_splits(cfg)) & set(polygons[str(cfg.data.split_column)]))
    if clash:
        raise ConfigError(
            f"data.split_vector '{cfg.data.split_vector}' has {clash} polygons, but data.split_scenes."
            f"{clash[0]} also gives that split: drop those polygons or that scene (one source per split)."
        )
    return polygons


def _external_splits(cfg: DictConfig) -> dict[str, DictConfig]:
    """Splits whose chips all come from another scene (``data.split_scenes``), in split order."""
    scenes = cfg.data.get("split_scenes") or {}
    return {s: scenes[s] for s in ("val", "test") if scenes.get(s) is not None and scenes[s].get("image")}


def _local_splits(cfg: DictConfig) -> tuple[str, ...]:
    """Splits cut from the training scene itself."""
    external = _external_splits(cfg)
    return tuple(s for s in SPLITS if s not in external)


def split_buffer(data: DictConfig) -> int:
    """Pixels kept between training chips and val/test: ``data.split_buffer``, default a quarter
    chip (measured on the shared scenes: a whole chip left 16-25 % of the labelled pixels to
    training chips, a quarter chip 44-53 %)."""
    return int(data.split_buffer if data.split_buffer is not None else int(data.chip_size) // 4)


def _split_map(cfg: DictConfig, art: Artifacts, classes: ClassTable,
               polygons: gpd.GeoDataFrame | None = None) -> np.ndarray:
    """Per-pixel split of the analysis grid: the user's polygons, else blocks dealt by class."""
    from deepgeo_runner.geo.chips import choose_class_split

    grid = Grid.of(art.image)
    if polygons is not None:
        from deepgeo_runner.geo.split_vector import rasterize_splits, require_splits

        split_map = rasterize_splits(polygons, grid)
        require_splits(split_map, _local_splits(cfg), f"data.split_vector '{cfg.data.split_vector}'")
        return split_map
    local = _local_splits(cfg)  # a split from another scene gets no blocks here
    fractions = [float(f) if s in local else 0.0 for s, f in zip(SPLITS, cfg.data.split_fractions, strict=True)]
    with rasterio.open(art.labels) as src:
        labels = src.read(1)
    return choose_class_split(labels, classes.ids, _block_size(cfg.data), fractions, int(cfg.seed),
                              split_buffer(cfg.data), int(cfg.data.chip_size))


def _block_size(data: DictConfig) -> int:
    return int(data.block_size or 2 * data.chip_size)


def _split_payload(cfg: DictConfig, art: Artifacts) -> dict[str, Any]:
    """What shaped the split map, for the cache keys of the stages that depend on it."""
    data = cfg.data
    if data.get("split_vector") is not None:
        payload = {"vector": vector_fingerprint(data.split_vector), "column": str(data.split_column)}
    else:
        payload = {"block": _block_size(data), "fractions": list(data.split_fractions), "seed": int(cfg.seed),
                   "by_class": [CLASS_SPLIT_VERSION, art.cache_keys["rasterize"]], "buffer": split_buffer(data),
                   "chip": int(data.chip_size)}
    if _external_splits(cfg):
        payload["external"] = list(_external_splits(cfg))
    return payload


def _data_check(cfg: DictConfig, run_dir: Path, art: Artifacts, classes: ClassTable, split_map: np.ndarray,
                rank: int) -> None:
    """Stage ``check``: count what each split gets, write ``data_report.json`` and print the table;
    a class no training chip can reach stops the run here (see :mod:`.data_check`)."""
    from deepgeo_runner.geo.rasterize import RASTER_SUFFIXES, class_value_sets
    from deepgeo_runner.pipeline import data_check as dc

    data = cfg.data
    grid = Grid.of(art.image)
    inputs = []
    for date, paths in (art.image_sources or {"": [art.image]}).items():
        for path in paths:
            with rasterio.open(path) as src:
                inputs.append(dc.input_record(path, src.crs, grid.crs, "image" + (f" {date}" if date else "")))
    inputs.append(dc.input_record(art.labels_source, dc.vector_crs(art.labels_source), grid.crs, "labels"))
    warnings = dc.reprojection_warnings(inputs)
    nodata = _plain(data.nodata)
    if art.labels_source.suffix.lower() in RASTER_SUFFIXES:
        opts = label_options(data)
        values = opts["class_values"] or list(range(1, len(data.classes) + 1))
        strays = dc.label_raster_strays(art.labels_source, class_value_sets(
            list(data.classes), values, opts["class_groups"], as_str=False))
        if strays:
            fate = "background (id 0)" if opts["others"] == "background" else "ignored"
            shown = ", ".join(f"{v:g}: {n} px" for v, n in sorted(strays.items(), key=lambda kv: -kv[1])[:8])
            warnings.append(f"label raster '{art.labels_source}' holds values ({shown}) that are neither a class "
                            f"value (data.class_values {values}) nor its nodata: they were read as {fate}. List them "
                            "in data.class_values/data.class_groups, or declare them nodata (gdal_edit.py -a_nodata).")
    reflectance = dc.reflectance_warning(art.image, list(cfg.preprocessing.indices), _plain(data.scale),
                                         _plain(data.offset), nodata, str(data.nodata_rule))
    if reflectance:
        warnings.append(reflectance)
    from deepgeo_runner.pipeline.drift import input_profile

    art.input_profile = input_profile(art.image, nodata, str(data.nodata_rule), art.band_names)
    with rasterio.open(art.labels) as src:
        labels = src.read(1)
    report = dc.check_data(
        labels=labels, class_names=classes.names, class_ids=classes.ids, split_map=split_map,
        buffer=split_buffer(data), chip_size=int(data.chip_size),
        nodata=dc.nodata_summary(art.image, nodata, str(data.nodata_rule)), inputs=inputs,
        external_splits=list(_external_splits(cfg)), warnings=warnings,
        allow_missing_classes=bool(data.allow_missing_classes),
        split_method="polygons" if data.get("split_vector") is not None else "class-stratified blocks",
    )
    report.input = art.input_profile
    if rank == 0:
        report.write(run_dir)
        log.info("data check (%s):\n%s", run_dir / dc.REPORT_NAME, report.table())
    report.raise_if_blocking()


def _entry(cache_dir: Path, stage: str, payload: dict, build, run_stage: bool):
    """Build (or reuse) a cache entry; when the stage is not requested, only reuse a verified one
    (StageError naming the entry to delete and the stage to add when it is absent or damaged)."""
    if run_stage:
        return cached_stage(cache_dir, stage, payload, build)
    return reuse_entry(cache_dir, stage, payload)


def _norm_options(cfg: DictConfig):
    from deepgeo_runner.geo.normalize import NormOptions

    pre = cfg.preprocessing
    return NormOptions(
        method=str(pre.normalization), per_band=bool(pre.get("norm_per_band", True)),
        out_range=tuple(float(v) for v in pre.get("norm_range", [0.0, 1.0])),
        percentiles=tuple(float(v) for v in pre.get("norm_percentiles", [2.0, 98.0])),
        constant=float(pre.get("norm_constant", 10000.0)), samples=int(pre.get("norm_samples", 1_000_000)),
    )


def _prepare_extras(cfg: DictConfig) -> dict[str, Any]:
    """The optional keyword arguments of ``prepare_scene`` that the config sets."""
    pre, data = cfg.preprocessing, cfg.data
    return {
        "expressions": _plain(pre.get("expressions")) or None,
        "index_constants": _plain(pre.get("index_constants")) or None,
        "keep_bands": _plain(pre.get("keep_bands")),
        "scale": _plain(data.get("scale")), "offset": _plain(data.get("offset")),
    }


def _prepare(cfg, cache_dir: Path, art: Artifacts, split_map: np.ndarray, run_stage: bool) -> None:
    from deepgeo_runner.geo.normalize import NormOptions

    pre = cfg.preprocessing
    norm = _norm_options(cfg)
    extras = _prepare_extras(cfg)
    dates = stack_dates(cfg.data)
    payload = {
        "v": CACHE_VERSION, "image": file_fingerprint(art.image), "bands": art.band_names,
        "indices": list(pre.indices), "normalization": pre.normalization,
        "nodata": _plain(cfg.data.nodata), "nodata_rule": str(cfg.data.nodata_rule),
        "split": _split_payload(cfg, art),
    }
    if len(dates) > 1:  # keys of single-date entries stay as they were
        payload["dates"] = dates
    cog = bool(pre.get("cog", False))
    if cog:
        payload["cog"] = True
    if norm != NormOptions(method=norm.method):  # keys of old entries stay valid for defaults
        payload["norm"] = {"per_band": norm.per_band, "range": list(norm.out_range),
                           "percentiles": list(norm.percentiles), "constant": norm.constant,
                           "samples": norm.samples}
    payload.update({k: v for k, v in extras.items() if v is not None})
    art.prepare_extras = {k: v for k, v in extras.items() if v is not None}

    def build(tmp: Path) -> None:
        prepare_scene(art.image, tmp, art.band_names, list(pre.indices), norm,
                      split_map == 0, _plain(cfg.data.nodata), nodata_rule=str(cfg.data.nodata_rule), dates=dates,
                      window=int(pre.get("window", 1024)), cog=cog, **extras)

    entry, key, reused = _entry(cache_dir, "prepare", payload, build, run_stage)
    art.prepared = load_prepared(entry)
    art.cache_keys["prepare"], art.reused["prepare"] = key, reused


def _plain(value: Any) -> Any:
    """A config value as plain Python (lists from ListConfig), for payloads and numpy."""
    return OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value


def _rasterize(cfg, cache_dir: Path, art: Artifacts, classes: ClassTable) -> None:
    """The training labels on the analysis grid (the image's), pixels without image data 255."""
    nodata = {"nodata": _plain(cfg.data.nodata), "nodata_rule": str(cfg.data.nodata_rule)}
    grid_key = hash_payload({"image": file_fingerprint(art.image), **nodata})
    entry, key, reused = _burn_labels(cfg, cache_dir, classes, art.labels_source, art.image, grid_key, True,
                                      **nodata)
    art.labels = entry / "labels.tif"
    art.cache_keys["rasterize"], art.reused["rasterize"] = key, reused


def label_options(data: DictConfig) -> dict[str, Any]:
    """How vector labels become class ids (rasterize_labels' keyword arguments); also stored in
    checkpoints, so that a new scene's labels are read the way the training labels were."""
    return {
        "class_column": str(data.class_column),
        "class_values": _plain(data.class_values),
        "class_groups": _plain(data.get("class_groups")) or None,
        "others": str(data.get("other_classes", "background")),
        "all_touched": bool(data.get("all_touched", False)),
    }


def _burn_labels(cfg, cache_dir: Path, classes: ClassTable, labels: Path, prepared: Path, grid_key: str,
                 run_stage: bool, **nodata: Any) -> tuple[Path, str, bool]:
    """The cached label raster of ``labels`` on the grid of ``prepared`` (cache key ``grid_key``);
    ``nodata``: how ``prepared`` marks pixels without data, when it is a raw image."""
    data = cfg.data
    opts = label_options(data)
    payload = {
        "v": CACHE_VERSION, "labels": vector_fingerprint(labels),
        "grid": grid_key, "column": opts["class_column"],
        "classes": list(data.classes), "values": opts["class_values"], "colors": classes.colors,
    }
    if opts["class_groups"] or opts["others"] != "background" or opts["all_touched"]:  # old keys stay valid
        payload.update({"groups": opts["class_groups"], "others": opts["others"], "all_touched": opts["all_touched"]})

    def build(tmp: Path) -> None:
        colors = classes.colors[1:] if classes.background_is_class else classes.colors
        rasterize_labels(labels, prepared, tmp / "labels.tif", list(data.classes), colors, **opts, **nodata)

    return _entry(cache_dir, "rasterize", payload, build, run_stage)


def _check_split_scenes(cfg: DictConfig, art: Artifacts) -> None:
    """Cheap checks of the other scenes (readable, georeferenced, same bands, same pixel size)."""
    with rasterio.open(art.image) as src:
        n_bands, res, train_crs = src.count, src.res, src.crs
    n_dates = max(len(stack_dates(cfg.data)), 1)
    for split, files in _external_splits(cfg).items():
        key = f"data.split_scenes.{split}.image"
        count = 0
        for path in _first_per_date(files.image):
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
                f"{key}='{_plain(files.image)}' has {count} bands{dates} but the training scene has {n_bands}: "
                "give a scene with the same bands (and dates) in the same order."
            )
        if cfg.data.get("resolution") is None and crs == train_crs and not np.allclose(other_res, res):
            log.warning("%s has %s m pixels, the training scene %s m: set data.resolution to chip both alike.",
                        key, tuple(round(r, 3) for r in other_res), tuple(round(r, 3) for r in res))


def _first_per_date(image: Any) -> list[Path]:
    """One raster per date of an image option (tiles of a date share its bands)."""
    return [paths[0] for paths in date_groups(image).values()]


def _prepare_split_scenes(cfg, cache_dir: Path, art: Artifacts, classes: ClassTable,
                          run_prepare: bool, run_rasterize: bool) -> None:
    """Other scenes of val/test: on the analysis CRS/resolution, prepared with the TRAINING
    scene's statistics (a held-out scene must not be normalized by its own), labels burnt
    with the same class table; each cached under keys that chain to the training scene's."""
    pre, data = cfg.preprocessing, cfg.data
    extras = {k: v for k, v in _prepare_extras(cfg).items() if v is not None}
    for split, files in _external_splits(cfg).items():
        image = _on_analysis_grid(cfg, cache_dir, art, date_groups(files.image), crop=False, key=f"scene_{split}")
        payload = {
            "v": CACHE_VERSION, "image": file_fingerprint(image), "bands": art.band_names,
            "indices": list(pre.indices), "nodata": _plain(data.nodata), "nodata_rule": str(data.nodata_rule),
            "stats_of": art.cache_keys["prepare"], **extras,
        }

        def build(tmp: Path, image: Path = image) -> None:
            prepare_scene(image, tmp, art.band_names, list(pre.indices), _norm_options(cfg), None,
                          _plain(data.nodata), nodata_rule=str(data.nodata_rule), stats=art.prepared.stats,
                          dates=stack_dates(data), window=int(pre.get("window", 1024)), **extras)

        entry, key, reused = _entry(cache_dir, "prepare", payload, build, run_prepare)
        art.cache_keys[f"prepare_{split}"], art.reused[f"prepare_{split}"] = key, reused
        prepared = load_prepared(entry).path
        entry, key, reused = _burn_labels(cfg, cache_dir, classes, Path(files.labels), prepared, key, run_rasterize)
        art.cache_keys[f"rasterize_{split}"], art.reused[f"rasterize_{split}"] = key, reused
        art.split_scenes[split] = SplitScene(prepared, entry / "labels.tif", f"data.split_scenes.{split}")


def chip_plan(cfg: DictConfig, classes: ClassTable) -> ChipPlan:
    """The chip plan of the ``data`` group, with defaults resolved."""
    data = cfg.data
    focus = None
    if data.oversample_class is not None:
        if data.oversample_class not in classes.names:
            raise ConfigError(
                f"data.oversample_class='{data.oversample_class}' is not one of {classes.names}."
            )
        focus = classes.names.index(data.oversample_class)
    return ChipPlan(
        chip_size=int(data.chip_size), strategy=data.chip_strategy, train_chips=int(data.train_chips),
        train_stride=data.train_stride, eval_stride=data.eval_stride,
        min_labelled_fraction=float(data.min_valid_fraction),
        buffer=split_buffer(data), balance_classes=bool(data.balance_classes),
        focus_class=focus, focus_fraction=float(data.oversample_fraction),
        points_path=data.chip_points,
    )


def _chips(cfg, cache_dir: Path, art: Artifacts, classes: ClassTable, split_map, run_stage: bool) -> None:
    plan = chip_plan(cfg, classes)
    points = vector_fingerprint(plan.points_path) if plan.points_path else None
    payload = {
        "v": CACHE_VERSION, "prepare": art.cache_keys["prepare"],
        "rasterize": art.cache_keys["rasterize"], "plan": plan.__dict__, "points": points,
        "split": _split_payload(cfg, art), "background": cfg.data.background,
        "seed": int(cfg.seed),  # random training windows depend on it, whatever made the split map
    }
    if art.prepared.stats.per_chip:
        payload["per_chip"] = True
    if art.split_scenes:  # their prepare/rasterize keys hash the other scenes' files
        payload["split_scenes"] = {s: [art.cache_keys[f"prepare_{s}"], art.cache_keys[f"rasterize_{s}"]]
                                   for s in art.split_scenes}

    def build(tmp: Path) -> None:
        build_chip_store(
            art.prepared.path, art.labels, tmp, split_map, plan,
            target_lut(classes.n_classes, classes.background_is_class), len(classes.names),
            int(cfg.seed), per_chip=art.prepared.stats.per_chip, split_scenes=art.split_scenes,
        )

    entry, key, reused = _entry(cache_dir, "chips", payload, build, run_stage)
    art.chips = load_chip_store(entry)
    art.cache_keys["chips"], art.reused["chips"] = key, reused


def _build_module(cfg, classes: ClassTable, in_channels: int, meta: dict, chips_dir: Path | None = None):
    """The LightningModule around the configured network (torch imported only now).

    ``meta`` is what prediction needs later (stored in every checkpoint); ``chips_dir`` gives
    the training labels' pixel counts to a loss whose class weights are computed from them.
    """
    import lightning.pytorch as pl

    from deepgeo_runner.lit.module import SegmentationModule
    from deepgeo_runner.ml.losses import needs_class_counts, set_class_counts

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    model_inputs = _model_inputs(cfg, in_channels)
    net = _instantiate(cfg.model, "model", **model_inputs, classes=len(classes.names))
    optimizer = _instantiate(cfg.optimizer, "optimizer")
    scheduler = _instantiate(cfg.scheduler, "scheduler") if cfg.scheduler else None
    loss = _instantiate(cfg.loss, "loss")
    weights = getattr(loss, "class_weights", None)
    if weights is not None and len(weights) != len(classes.names):
        raise ConfigError(
            f"loss.class_weights has {len(weights)} values for the {len(classes.names)} outputs "
            f"{classes.names}."
        )
    if needs_class_counts(loss) and chips_dir is not None:
        n = len(classes.names)
        set_class_counts(loss, split_class_counts(chips_dir, n).get("train", np.zeros(n, dtype=np.int64)).tolist())
    meta = {"class_names": classes.names, "class_ids": classes.ids, "class_colors": classes.colors,
            "model": OmegaConf.to_container(cfg.model, resolve=True), "model_inputs": model_inputs, **meta}
    if cfg.train.channels_last:
        import torch

        net = net.to(memory_format=torch.channels_last)
    return SegmentationModule(net, optimizer, scheduler, classes.names, loss=loss,
                              inference_meta=meta, compile_net=bool(cfg.train.compile))


def _model_inputs(cfg, n_features: int) -> dict[str, int]:
    """in_channels (and dates, for a multi-temporal network) of the configured model.

    A multi-temporal network (its class has ``temporal = True``) takes the bands of one date
    and the number of dates; the prepared stack holds the dates date-major as bands.
    """
    from hydra.utils import get_object

    try:
        target = get_object(cfg.model._target_)
    except Exception:  # reported with its cause when the model is built
        target = None
    if not getattr(target, "temporal", False):
        return {"in_channels": n_features}
    dates = len(stack_dates(cfg.data)) or 1
    if n_features % dates:
        raise ConfigError(
            f"model={cfg.model._target_} is multi-temporal but the stack's {n_features} bands "
            f"are not {dates} dates (data.dates or the keys of data.image) of equal band count."
        )
    return {"in_channels": n_features // dates, "dates": dates}


def _learn(cfg, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str], rank: int) -> None:
    """fit / test / predict: the stages that need torch (see :func:`_learn_stages`), stopped cleanly
    by SIGINT/SIGTERM and recorded in provenance.json when they do not complete."""
    _guarded(cfg, run_dir, art, classes, _learn_stages, cfg, run_dir, art, classes, stages, rank)


def _guarded(cfg, run_dir: Path, art: Artifacts, classes: ClassTable, stage, *args: Any) -> None:
    """Run ``stage(*args, stop=...)`` under :class:`~deepgeo_runner.lit.guards.SignalStop`; when it
    is interrupted or fails on purpose (a DeepGeoError), say so in provenance.json, then re-raise."""
    from deepgeo_runner.lit.guards import SignalStop

    with SignalStop() as stop:
        try:
            stage(*args, stop=stop)
        except DeepGeoError as exc:
            art.status = "interrupted" if isinstance(exc, RunInterrupted) else "failed"
            art.error = str(exc)
            if global_rank() == 0:
                try:
                    _provenance(cfg, run_dir, art, classes)
                except Exception as write_error:  # e.g. the full disk that stopped the run: keep its message
                    log.warning("could not record the run's status in provenance.json: %s", write_error)
            raise


def _learn_stages(cfg, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str], rank: int,
                  stop=None) -> None:
    """fit / test / predict.

    After a multi-process fit/test every rank predicts its share of the scene's window rows on
    its own device, and rank 0 assembles the one output; otherwise rank 0 predicts alone.
    """
    prepared = art.prepared
    meta = {
        "features": list(prepared.feature_names), "band_names": art.band_names,
        "indices": list(cfg.preprocessing.indices), "stats": prepared.stats.to_dict(),
        "chip_size": int(cfg.data.chip_size), "dates": list(prepared.dates), "labelling": label_options(cfg.data),
        "input_profile": art.input_profile, **art.prepare_extras,
    }
    module = _build_module(cfg, classes, prepared.n_features, meta, art.chips.path if art.chips else None)
    checkpoint = checkpoint_file(cfg.predict.checkpoint) if cfg.predict.checkpoint else None
    trainer = None
    if {"fit", "test"} & set(stages):
        from deepgeo_runner.lit.datamodule import ChipDataModule

        datamodule = ChipDataModule(art.chips.path, int(cfg.data.batch_size), int(cfg.data.num_workers),
                                    _augment_plan(cfg), int(cfg.seed), resident=bool(cfg.data.resident),
                                    test_split=str(cfg.test_split))
        checkpoint, trainer = _fit_test(cfg, run_dir, art, module, datamodule, stages, checkpoint, stop=stop)
        rank = trainer.global_rank
    art.checkpoint = checkpoint
    if "predict" not in stages:
        return
    device = str(trainer.strategy.root_device) if trainer is not None else _predict_device(cfg)
    world_size = trainer.world_size if trainer is not None else 1
    # part files meet in the run directory, which only the processes of one machine surely share
    if world_size > 1 and trainer.num_nodes == 1 and not cfg.predict.get("image"):
        checkpoint = trainer.strategy.broadcast(checkpoint, src=0)  # every rank loads the same weights
        if rank == 0:  # part files of an interrupted earlier attempt must not be taken for this one's
            for stale in run_dir.glob(".prediction.tif.parts-*"):
                shutil.rmtree(stale, ignore_errors=True)
        trainer.strategy.barrier("deepgeo-predict")
        _predict(cfg, run_dir, art, classes, module, checkpoint, device, rank=rank, world_size=world_size)
    elif rank == 0:
        _predict(cfg, run_dir, art, classes, module, checkpoint, device)


def _augment_plan(cfg: DictConfig):
    """The ``augmentation`` group as the plan the datamodules apply on the device."""
    from deepgeo_runner.lit.datamodule import AugmentPlan

    aug = cfg.augmentation
    return AugmentPlan(aug.name, tuple(aug.expand_ops), float(aug.brightness), float(aug.noise_std))


def _learn_datamodule(cfg, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str]) -> None:
    """fit / test on a datamodule's chips (:func:`_learn_datamodule_stages`), guarded like :func:`_learn`."""
    _guarded(cfg, run_dir, art, classes, _learn_datamodule_stages, cfg, run_dir, art, classes, stages)


def _learn_datamodule_stages(cfg, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str],
                             stop=None) -> None:
    """fit / test on the chips of a datamodule given by ``data.datamodule._target_`` (data=torchgeo).

    The datamodule is used as it is (its download, splits, normalization and augmentation);
    :class:`~deepgeo_runner.lit.torchgeo.TorchGeoAdapter` turns its batches into ours.
    """
    from deepgeo_runner.lit.torchgeo import TorchGeoAdapter

    data = cfg.data
    meta = {"datamodule": data.datamodule._target_, "in_channels": int(data.in_channels),
            "band_names": list(data.band_names), "ignore_index": data.ignore_index}
    module = _build_module(cfg, classes, int(data.in_channels), meta)
    inner = _instantiate(data.datamodule, "data.datamodule")
    datamodule = TorchGeoAdapter(inner, len(classes.names), int(data.in_channels), data.ignore_index,
                                 _augment_plan(cfg), int(cfg.seed))
    checkpoint = checkpoint_file(cfg.predict.checkpoint) if cfg.predict.checkpoint else None
    art.checkpoint, _ = _fit_test(cfg, run_dir, art, module, datamodule, stages, checkpoint,
                                  shard_here=False, stop=stop)


def _fit_test(cfg, run_dir: Path, art: Artifacts, module, datamodule, stages: list[str],
              checkpoint: Path | None, shard_here: bool = True, stop=None):
    """Train and/or test with Lightning; return the best checkpoint and the Trainer.

    ``shard_here``: the datamodule shards by rank itself (our chip store); otherwise Lightning
    adds its distributed sampler (a datamodule by ``_target_``). ``stop``: the run's
    :class:`~deepgeo_runner.lit.guards.SignalStop`, told the Trainer so that a signal stops it
    at a batch boundary.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from deepgeo_runner.lit.checkpoints import SafeCheckpointIO
    from deepgeo_runner.lit.guards import SignalStop
    from deepgeo_runner.pipeline import train

    stop = stop or SignalStop()
    callbacks = instantiate_callbacks(cfg.get("callbacks"))  # conf/callbacks/: checkpoints, seeds, history
    logger = instantiate_logger(cfg.get("logger"))
    trainer = _instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=logger,
                           default_root_dir=str(run_dir), use_distributed_sampler=not shard_here,
                           plugins=[SafeCheckpointIO()])
    stop.trainer = trainer
    try:
        if "fit" in stages:
            resume = _resume_checkpoint(cfg, run_dir, module, logger)
            checkpoint = train.fit(trainer, module, datamodule, resume)
            best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
            art.best_score = float(best) if best is not None and bool(best.isfinite()) else None
        if stop.signum is not None:
            raise stop.interrupted()
        if "test" in stages:
            if checkpoint is not None and "fit" not in stages:  # predict.checkpoint: say if it is another net
                from deepgeo_runner.ml.checkpoint import load_checkpoint

                train.load_matching_weights(module, load_checkpoint(checkpoint, key="predict.checkpoint"), checkpoint)
            scores = train.test(trainer, module, datamodule, checkpoint)
            scores["split"] = str(cfg.test_split)
            if trainer.global_rank == 0:
                write_text_atomic(run_dir / "metrics.json", strict_json(scores))
            art.metrics = scores
        if stop.signum is not None:
            raise stop.interrupted()
    except SIGTERMException:  # Lightning's stop on SIGTERM (or our SIGINT, handed to it) exits 0 otherwise
        raise stop.interrupted() from None
    return checkpoint, trainer


def _resume_checkpoint(cfg, run_dir: Path, module, logger) -> Path | None:
    """``checkpoints/last.ckpt`` of this run directory when the run resumes (``train.resume``), checked
    first: readable with weights_only, and written by the configured network (else a message saying
    what to change, not a traceback from deep inside Lightning)."""
    from deepgeo_runner.ml.checkpoint import load_checkpoint
    from deepgeo_runner.pipeline import train

    last = run_dir / "checkpoints" / "last.ckpt"
    if not (cfg.train.resume and last.is_file()):
        return None
    try:
        state = load_checkpoint(last, key="checkpoint")
    except InputDataError as exc:
        raise InputDataError(f"{exc} This run directory cannot be resumed from it: set train.resume=false to "
                             "train anew here (its checkpoints are replaced), or give another hydra.run.dir.") from exc
    train.load_matching_weights(
        module, state, last,
        hint=(f"Relaunching into a run directory resumes its training. Set train.resume=false to train the configured "
              f"model here from scratch (its checkpoints are replaced), or give another hydra.run.dir "
              f"(this one is {run_dir})."))
    saved = [len(g.get("params", [])) for o in state.get("optimizer_states") or [] for g in o.get("param_groups", [])]
    n_params = len(list(module.parameters()))  # what configure_optimizers hands the optimizer
    if saved and sum(saved) != n_params:
        raise ConfigError(
            f"checkpoint '{last}' holds the optimizer state of {sum(saved)} weight tensors, the configured network "
            f"trains {n_params} (a checkpoint of an earlier version, "
            "whose U-Net kept unused encoder stages, or another network): its weights apply (stages=[test,predict] "
            "predict.checkpoint=...) but its training cannot continue. Set train.resume=false to train anew here, "
            "or give another hydra.run.dir.")
    epoch = int(state.get("epoch", 0))
    if hasattr(logger, "resume_after_epoch"):
        logger.resume_after_epoch = epoch
    log.info("fit: resuming from %s (%d epochs done, step %d)", last, epoch + 1, int(state.get("global_step", 0)))
    return last


def _predict(
    cfg, run_dir: Path, art: Artifacts, classes: ClassTable, module, checkpoint: Path | None,
    device: str, rank: int = 0, world_size: int = 1,
) -> None:
    """Classify the whole prepared scene (or ``predict.image``) with the best weights.

    By default rank 0 alone does it. Called on every rank with ``rank``/``world_size``, the
    window rows are shared out and rank 0 assembles the one output (part files, no collective).
    """
    from deepgeo_runner.ml.predict import predict_scene
    from deepgeo_runner.pipeline import train

    meta = train.load_weights(module, checkpoint) if checkpoint is not None else {}
    if hasattr(module.net, "output_crop") and hasattr(module.net, "mirror_pad"):
        module.net.mirror_pad = True  # valid padding: overlap-tile, logits as large as the window
    if cfg.predict.get("image"):  # prepared like the checkpoint's training scene; rank 0 alone
        if rank != 0:
            return
        art.prediction = _predict_new_scene(cfg, run_dir, module.net, meta or module.inference_meta, device)
        return
    stats = art.prepared.stats
    art.prediction = predict_scene(
        module.net, art.prepared.path, run_dir / "prediction.tif",
        window=int(cfg.predict.window or cfg.data.chip_size), overlap=float(cfg.predict.overlap),
        batch_size=int(cfg.predict.batch_size), class_ids=classes.ids,
        class_names=classes.names, class_colors=classes.colors, device=device,
        standardize_windows=stats.per_chip, rank=rank, world_size=world_size,
        **predict_options(cfg),
    )
    if rank == 0:
        _polygons(cfg, art.prediction)


def predict_options(cfg: DictConfig) -> dict[str, Any]:
    """The ``predict`` keys that :func:`deepgeo_runner.ml.predict.predict_scene` takes as is."""
    pred = cfg.predict
    return {"blend": pred.blend, "probabilities": pred.probabilities, "entropy": bool(pred.entropy),
            "tta": bool(pred.tta), "amp": bool(pred.amp), "cog": bool(pred.cog)}


def _predict_device(cfg: DictConfig) -> str:
    """Without a Trainer: the current GPU, unless the trainer config asks for the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() and cfg.trainer.get("accelerator") != "cpu" else "cpu"


def _polygons(cfg: DictConfig, prediction: Path) -> None:
    """``predict.polygons``: the chosen classes as polygons with areas, and per-class totals."""
    if not cfg.predict.polygons:
        return
    from deepgeo_runner.geo.polygonize import polygonize_classes

    polygonize_classes(prediction, prediction.with_name("prediction_polygons.gpkg"),
                       list(cfg.predict.polygons), float(cfg.predict.min_area_ha))


def _predict_new_scene(cfg: DictConfig, run_dir: Path, net, meta: dict, device: str | None = None) -> Path:
    """``predict.image``: prepare the new scene with the checkpoint's bands, indices and
    statistics (into ``run_dir/predict_input``) and classify it into ``run_dir/prediction.tif``."""
    from deepgeo_runner.ml.predict import predict_scene
    from deepgeo_runner.pipeline.apply import prepare_like_checkpoint

    prepared = prepare_like_checkpoint(cfg.predict.image, run_dir / "predict_input", meta, cfg.data.nodata)
    prediction = predict_scene(
        net, prepared.path, run_dir / "prediction.tif",
        window=int(cfg.predict.window or meta.get("chip_size") or cfg.data.chip_size),
        overlap=float(cfg.predict.overlap), batch_size=int(cfg.predict.batch_size),
        class_ids=meta["class_ids"], class_names=meta["class_names"], class_colors=meta["class_colors"],
        device=device or _predict_device(cfg), standardize_windows=prepared.stats.per_chip,
        **predict_options(cfg),
    )
    _polygons(cfg, prediction)
    if cfg.predict.get("labels"):
        _score_new_scene(cfg, run_dir, prepared.path, prediction, meta)
    return prediction


def _score_new_scene(cfg: DictConfig, run_dir: Path, prepared: Path, prediction: Path, meta: dict) -> None:
    """``predict.labels``: rasterize the new scene's labels with the checkpoint's classes, read
    the way its training labels were (class column, values, groups: recorded in the checkpoint),
    and score every labelled pixel of the class map into ``prediction_metrics.json``."""
    from deepgeo_runner.pipeline.evaluate import score_scene

    names, ids = list(meta["class_names"]), list(meta["class_ids"])
    of_interest = [n for n, i in zip(names, ids, strict=True) if i > 0]
    colors = [c for c, i in zip(meta["class_colors"], ids, strict=True) if i > 0]
    opts = meta.get("labelling") or label_options(cfg.data)  # older checkpoints: this run's data group
    reference = rasterize_labels(cfg.predict.labels, prepared, run_dir / "predict_input" / "labels.tif",
                                 of_interest, colors, **opts)
    scores = score_scene(reference, prediction, ids, names)
    scores.update(split="scene", image=_plain(cfg.predict.image), labels=str(cfg.predict.labels))
    write_text_atomic(run_dir / "prediction_metrics.json", strict_json(scores))
    log.info("scene %s: accuracy %.4f, F1 macro %.4f over %d labelled pixels", cfg.predict.labels,
             scores["accuracy"], scores["f1_macro"], scores["pixels"])


def apply_checkpoint_stage(cfg: DictConfig, run_dir: str | Path, art: Artifacts | None = None) -> Artifacts:
    """``deepgeo stages=[predict] predict.checkpoint=CKPT predict.image=NEW.tif``: the whole stage
    from the checkpoint alone (no data preparation of the training scene, no model config);
    ``run`` takes this path instead of the data stages when ``predict`` is the only stage.
    """
    from deepgeo_runner.pipeline.apply import build_net, read_checkpoint

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    art = art or Artifacts()
    art.checkpoint = checkpoint_file(cfg.predict.checkpoint)
    weights, meta = read_checkpoint(art.checkpoint)
    start = time.perf_counter()
    art.image_sources = date_groups(cfg.predict.image)
    tiles = all_tiles(art.image_sources)
    art.image = tiles[0] if len(tiles) == 1 else None
    art.prediction = _predict_new_scene(cfg, run_dir, build_net(meta, weights), meta)
    art.timings["predict"] = round(time.perf_counter() - start, 2)
    return art

