"""Checks of a composed config that the schema's types cannot express.

They run in well under a second, before torch or Lightning is imported and before any data
is read, so a typo costs seconds rather than a failed run hours later. Every message names
the key, the bad value and what would be accepted.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import re
import typing
import warnings
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from deepgeo_runner.config import introspect
from deepgeo_runner.config.loggers import check_loggers
from deepgeo_runner.config.schema import (
    DEMO_REFERENCE,
    RunConfig,
    assess_reference,
    builtin_demo,
    check_assess_ranges,
    check_data_ranges,
    check_export_ranges,
    check_predict_ranges,
    monitor_direction,
    range_error,
    run_stages,
)
from deepgeo_runner.config.stages import DATAMODULE_STAGES, DEFAULT_STAGES, STAGES, WEIGHT_STAGES, is_assess_only
from deepgeo_runner.core.checkpoint_path import checkpoint_file
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.export.formats import REQUIREMENTS as EXPORT_REQUIREMENTS
from deepgeo_runner.geo.indices import check_indices, feature_index_names
from deepgeo_runner.geo.normalize import METHODS, NormOptions
from deepgeo_runner.geo.scene_sources import check_scene_files
from deepgeo_runner.geo.sensors import sensor_band_names

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")

_MISSING_HINTS = {
    "data.image": "the path of the image (GeoTIFF/COG), e.g. data.image=/data/scene.tif",
    "data.labels": "the ground truth: a vector file (.gpkg/.shp/.geojson) or a label GeoTIFF, "
    "e.g. data.labels=/data/prodes.gpkg",
    "data.classes": "the classes of interest in order (ids 1..N), e.g. data.classes=[forest,deforestation]",
    "data.datamodule._target_": "the datamodule class, e.g. "
    "data.datamodule._target_=torchgeo.datamodules.LandCoverAIDataModule",
    "data.in_channels": "the number of bands of the datamodule's images, e.g. data.in_channels=3",
}


_fail = range_error  # one wording for every "key=value is not valid: expected ..." message


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` on the first problem found, naming the key."""
    check_known_keys(cfg)
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra"))
    for key in missing:
        hint = _MISSING_HINTS.get(key, "a value")
        raise ConfigError(f"{key} is required (data={cfg.data.get('name', '?')}): give {hint}.")
    _check_stages(cfg)
    if uses_datamodule(cfg.data):
        _check_datamodule(cfg)
    else:
        scene = not assess_only(cfg)  # stages=[assess]: an existing map, no scene to read or prepare
        _check_data(cfg.data, files=scene)
        if scene and cfg.preprocessing.normalization not in METHODS:
            raise _fail("preprocessing.normalization", cfg.preprocessing.normalization, f"one of {list(METHODS)}")
        if scene:
            _check_preprocessing(cfg)
    if cfg.augmentation.brightness < 0 or cfg.augmentation.noise_std < 0:
        raise _fail("augmentation.brightness/noise_std",
                    (cfg.augmentation.brightness, cfg.augmentation.noise_std), "non-negative strengths")
    paste = cfg.augmentation.get("copy_paste", "auto")
    if str(paste) != "auto" and (isinstance(paste, bool) or not isinstance(paste, int | float) or not 0 <= paste <= 1):
        raise _fail("augmentation.copy_paste", paste, "'auto' or a share of training chips in [0, 1]")
    edge = cfg.augmentation.get("copy_paste_edge", 0.0)
    if isinstance(edge, bool) or not isinstance(edge, int | float) or not 0 <= edge <= 4:
        raise _fail("augmentation.copy_paste_edge", edge, "a Gaussian sigma in pixels in [0, 4] (0: a sharp paste)")
    teacher = cfg.augmentation.get("teacher", "auto")
    if str(teacher) != "auto" and not isinstance(teacher, bool):
        raise _fail("augmentation.teacher", teacher, "'auto', true or false")
    sure = cfg.augmentation.get("teacher_confidence", 0.8)
    if isinstance(sure, bool) or not isinstance(sure, int | float) or not 0.5 <= sure <= 1:
        raise _fail("augmentation.teacher_confidence", sure, "a class probability in [0.5, 1]")
    reach = cfg.augmentation.get("teacher_reach_px", 0)
    if isinstance(reach, bool) or not isinstance(reach, int) or not 0 <= reach <= 64:
        raise _fail("augmentation.teacher_reach_px", reach, "a whole number of pixels in [0, 64] (0: everywhere)")
    weight = cfg.augmentation.get("teacher_weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1:
        raise _fail("augmentation.teacher_weight", weight, "a loss weight in (0, 1] (1: as a polygon's label)")
    for group in ("model", "loss", "trainer"):
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"{group}: needs a '_target_' naming the class to build (see conf/{group}/).")
    _check_trainer(cfg.trainer)
    _check_protocol(cfg)
    _check_predict(cfg)
    _check_assess(cfg)
    _check_export(cfg)
    check_loggers(cfg.get("logger"))  # its shape before its targets: an old `logger._target_=...` says what changed
    check_targets(cfg)
    check_smp_names(cfg.model)
    _check_train(cfg)
    _check_device_resident(cfg.data)
    _check_callbacks(cfg.get("callbacks"))


MONITORED = ("val_f1_macro", "val_iou_macro", "val_accuracy", "val_loss", "train_loss")  # logged by lit.module


def monitor_mode(train: DictConfig) -> str:
    """The direction of ``train.monitor``: ``train.monitor_mode``, or for ``auto`` min for a loss, else max."""
    return monitor_direction(str(train.monitor), str(getattr(train, "monitor_mode", "auto")))


def _check_callbacks(callbacks: Any) -> None:
    """``callbacks`` maps names to ``_target_`` nodes (or null, to drop one): what the Trainer is given."""
    if callbacks is None:
        return
    if not isinstance(callbacks, DictConfig):
        raise _fail("callbacks", callbacks, "a mapping name → {_target_: ...} (see conf/callbacks/)")
    for name in callbacks:
        node = callbacks.get(name)
        if node is not None and not (isinstance(node, DictConfig) and "_target_" in node):
            raise _fail(f"callbacks.{name}", node, "a node with a '_target_' naming a Lightning callback, "
                        f"or null to drop it (callbacks.{name}=null)")


def _check_train(cfg: DictConfig) -> None:
    """The monitored score exists and its direction is known, before any data is read."""
    train = cfg.train
    if train.monitor not in MONITORED:
        import difflib

        close = difflib.get_close_matches(str(train.monitor), MONITORED, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise _fail("train.monitor", train.monitor, f"a score the training logs, one of {list(MONITORED)}{hint}")
    mode = train.monitor_mode  # its values are checked as the config is composed (schema.MonitorMode)
    is_loss = "loss" in str(train.monitor)
    if monitor_mode(train) != ("min" if is_loss else "max"):
        worst = "highest loss" if is_loss else f"lowest {train.monitor}"
        raise ConfigError(f"train.monitor={train.monitor} with train.monitor_mode={mode} would keep the checkpoint "
                          f"of the {worst}: use train.monitor_mode={'min' if is_loss else 'max'} (or auto).")


DEVICE_RESIDENT = ("auto", True, False)


def _check_device_resident(data: DictConfig) -> None:
    """``data.device_resident``: auto, true or false; the old ``data.resident`` still works, with a warning."""
    value = data.get("device_resident", "auto")
    if isinstance(value, str) and value.lower() in ("true", "false"):
        value = value.lower() == "true"
    if value not in DEVICE_RESIDENT and not (isinstance(value, str) and value.lower() == "auto"):
        raise _fail("data.device_resident", value, "auto (on a GPU when the chip store fits half its free memory), "
                    "true or false")
    if data.get("resident") is not None:
        warnings.warn(f"data.resident={str(data.resident).lower()} is deprecated: it is data.device_resident now "
                      f"(auto, true or false); data.device_resident={str(data.resident).lower()} is used.",
                      FutureWarning, stacklevel=2)


def uses_datamodule(data: DictConfig) -> bool:
    """True when chips come from a LightningDataModule by ``_target_`` (data=torchgeo), not from a scene."""
    return getattr(data, "datamodule", None) is not None  # the composed config or its typed options


def _check_datamodule(cfg: DictConfig) -> None:
    """data=torchgeo: a datamodule to build, classes and bands to size the network, fit/test only."""
    data, name = cfg.data, cfg.data.name
    node = data.datamodule
    if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
        raise ConfigError(f"data.datamodule needs a '_target_' naming the class to build: give "
                          f"{_MISSING_HINTS['data.datamodule._target_']}.")
    package = node._target_.split(".")[0]
    if importlib.util.find_spec(package) is None:  # the top package only: nothing is imported
        raise ConfigError(f"data.datamodule._target_='{node._target_}': no module '{package}' is installed "
                          f"(pip install {package}), or add its folder to PYTHONPATH.")
    other = [s for s in cfg.stages if s not in DATAMODULE_STAGES]
    if other and list(cfg.stages) != list(DEFAULT_STAGES):  # the whole cycle (the default) runs what applies
        raise ConfigError(
            f"stages {other} do not apply to data={name}: a datamodule yields ready-made chips, so there is "
            "no scene to prepare, rasterize, chip, predict or report on. Use stages=[fit,test] (or "
            "stages=[test] predict.checkpoint=CKPT); to classify a whole scene, train with data=scene."
        )
    for key in ("image", "labels"):
        if cfg.predict.get(key) is not None:
            raise ConfigError(
                f"predict.{key} is set but data={name} runs only fit and test: apply a data=scene run's "
                "checkpoint to a scene instead (a datamodule run records no bands or normalization to prepare it)."
            )
    if cfg.test_split != "test":
        raise _fail("test_split", cfg.test_split, f"test with data={name} (the datamodule's own test split)")
    classes = list(data.classes)
    if not classes or len(set(classes)) != len(classes):
        raise _fail("data.classes", classes, "one distinct name per mask value 0..K-1, e.g. [background,building]")
    _check_class_colors(data, classes)
    if data.get("in_channels") is None or data.in_channels < 1:
        raise _fail("data.in_channels", data.get("in_channels"), "the positive number of bands of the images")
    if data.batch_size < 1:
        raise _fail("data.batch_size", data.batch_size, "a positive batch size")
    if cfg.augmentation.name == "d4_expand":
        raise _fail("augmentation", "d4_expand", f"d4 or none with data={name} (d4_expand copies a chip store)")
    weights = cfg.loss.get("class_weights") if isinstance(cfg.loss, DictConfig) else None
    if isinstance(weights, str):
        raise _fail("loss.class_weights", weights, f"explicit weights, one per class, or null with data={name} "
                    "(the training labels' pixel counts are known only for chip stores)")


def _check_preprocessing(cfg: DictConfig) -> None:
    """Indices, expressions, sensor presets, normalization options and scale/offset."""
    pre, data = cfg.preprocessing, cfg.data
    band_names = list(data.band_names)
    if not band_names and data.get("sensor"):
        band_names = sensor_band_names(str(data.sensor))  # the fullest layout; checked again on read
    examples = {"expressions": "{gndvi: '(nir - green) / (nir + green)'}", "index_constants": "{L: 0.5}"}
    for key, example in examples.items():
        if pre.get(key) is not None and not isinstance(pre[key], DictConfig):
            raise _fail(f"preprocessing.{key}", pre[key], f"a mapping, e.g. {example}")
    expressions = OmegaConf.to_container(pre.expressions) if pre.get("expressions") else {}
    constants = OmegaConf.to_container(pre.index_constants) if pre.get("index_constants") else {}
    names = feature_index_names(list(pre.indices), expressions)
    if names:
        if not band_names:
            raise ConfigError(
                f"preprocessing.indices={names} needs data.band_names, the role of each band in file "
                "order (e.g. [blue,green,red,nir,swir1,swir2]) or data.sensor (e.g. landsat8); or set "
                "preprocessing.indices=[]."
            )
        check_indices(names, band_names, expressions, constants)
    keep = pre.get("keep_bands")
    if keep is not None and band_names:
        unknown = [b for b in keep if b not in band_names]
        if unknown:
            raise _fail("preprocessing.keep_bands", list(keep), f"names from data.band_names {band_names}")
    NormOptions(
        str(pre.normalization), bool(pre.norm_per_band),
        tuple(float(v) for v in pre.norm_range),
        tuple(float(v) for v in pre.norm_percentiles),
        float(pre.norm_constant), int(pre.norm_samples),
    ).check()
    for key in ("norm_range", "norm_percentiles"):
        if pre.get(key) is not None and len(pre[key]) != 2:
            raise _fail(f"preprocessing.{key}", list(pre[key]), "two numbers [low, high]")
    if pre.window < 64:
        raise _fail("preprocessing.window", pre.window, "at least 64 pixels (memory ∝ window²)")
    for key in ("scale", "offset"):
        value = data.get(key)
        values = list(value) if isinstance(value, ListConfig) else [value]
        numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        if value is not None and not numbers:
            raise _fail(f"data.{key}", value, "a number or one number per band (e.g. 0.0000275)")


def _check_scene(data: DictConfig) -> None:
    """Mosaic/crop/reprojection and rasterizer options of the ``data`` group."""
    if data.get("sensor"):
        sensor_band_names(str(data.sensor))
    bbox = data.get("bbox")
    if bbox is not None and (len(bbox) != 4 or not (bbox[0] < bbox[2] and bbox[1] < bbox[3])):
        raise _fail("data.bbox", list(bbox), "[minx, miny, maxx, maxy] in the target CRS with min < max")
    if data.get("aoi") is not None and not Path(data.aoi).exists():
        raise ConfigError(f"data.aoi='{data.aoi}': no such file (looked in {Path.cwd()}).")
    if data.get("crs") is not None:
        from rasterio.crs import CRS

        try:
            CRS.from_user_input(data.crs)
        except Exception as exc:
            raise _fail("data.crs", data.crs, f"a CRS such as 'EPSG:32722' ({exc})") from exc
    res = data.get("resolution")
    if res is not None:
        values = list(res) if isinstance(res, ListConfig) else [res]
        if len(values) not in (1, 2) or not all(isinstance(v, int | float) and v > 0 for v in values):
            raise _fail("data.resolution", res, "a positive pixel size or [x, y] in target CRS units")
    groups = data.get("class_groups")
    if groups is not None and not isinstance(groups, DictConfig):
        raise _fail("data.class_groups", groups, "a mapping, e.g. {deforestation: [clearcut, degradation]}")
    if groups:
        unknown = [g for g in groups if g not in list(data.classes)]
        if unknown:
            raise _fail("data.class_groups", OmegaConf.to_container(groups),
                        f"keys from data.classes {list(data.classes)} (unknown: {unknown})")
        bad = [g for g, members in groups.items() if not isinstance(members, ListConfig)]
        if bad:
            raise _fail("data.class_groups", OmegaConf.to_container(groups),
                        "a list of source classes per class, e.g. {deforestation: [clearcut, degradation]}")


def _check_nodata(data: DictConfig) -> None:
    values = list(data.nodata) if isinstance(data.nodata, ListConfig) else [data.nodata]
    for value in values:
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _fail("data.nodata", OmegaConf.to_container(data.nodata) if isinstance(data.nodata, ListConfig)
                        else data.nodata, "a number, or a list of one number (or null) per band")


def _check_stages(cfg: DictConfig) -> None:
    stages = list(cfg.stages)
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise _fail("stages", stages, f"a subset of {list(STAGES)} (unknown: {unknown})")
    if len(set(stages)) != len(stages):
        raise _fail("stages", stages, "each stage at most once")
    if not stages:
        raise _fail("stages", stages, f"at least one of {list(STAGES)}")


def _check_class_colors(data: DictConfig, classes: list[str]) -> None:
    if data.class_colors is not None:
        colors = list(data.class_colors)
        if len(colors) != len(classes) or not all(_HEX.match(str(c)) for c in colors):
            raise _fail("data.class_colors", colors, f"{len(classes)} colours written '#rrggbb'")


def _check_files(key: str, value: Any) -> None:
    """A path, a list of tiles, or (a time stack) a mapping date → path or tiles: all must exist."""
    groups = value.items() if isinstance(value, DictConfig) else [(None, value)]
    for date, tiles in groups:
        if tiles is None or (isinstance(tiles, ListConfig) and not tiles):
            raise ConfigError(f"{key}: date '{date}' names no file." if date else f"{key} names no file.")
        for item in (list(tiles) if isinstance(tiles, ListConfig) else [tiles]):
            if not Path(str(item)).exists():
                where = f"{key}.{date}" if date is not None else key
                raise ConfigError(f"{where}='{item}': no such file (looked in {Path.cwd()}).")


def _check_dates(data: DictConfig) -> None:
    """A mapping ``data.image`` names the dates itself; ``data.dates`` may only repeat them."""
    if not isinstance(data.get("image"), DictConfig):
        return
    keys = [str(k) for k in data.image.keys()]
    dates = [str(d) for d in (data.get("dates") or [])]
    if dates and dates != keys:
        raise _fail("data.dates", dates, f"empty or the keys of data.image in the same order {keys}")


def _check_data(data: DictConfig, files: bool = True) -> None:
    if files and (data.name != "demo" or data.image is not None):
        for key in ("image", "labels"):
            value = data.get(key)
            if value is None:
                raise ConfigError(
                    f"data.{key} is required (data={data.name}): give {_MISSING_HINTS['data.' + key]}."
                )
            _check_files(f"data.{key}", value)
        _check_dates(data)
    _check_scene(data)
    classes = list(data.classes)
    if not classes:
        raise ConfigError(f"data.classes is required: give {_MISSING_HINTS['data.classes']}.")
    if len(set(classes)) != len(classes):
        raise _fail("data.classes", classes, "distinct class names")
    if data.class_values is not None and len(data.class_values) != len(classes):
        raise _fail("data.class_values", list(data.class_values), f"{len(classes)} values, one per class")
    _check_class_colors(data, classes)
    check_data_ranges(data)
    if data.chip_strategy not in ("random", "grid", "points"):
        raise _fail("data.chip_strategy", data.chip_strategy, "one of ['random', 'grid', 'points']")
    if data.chip_strategy == "points" and (data.chip_points is None or not Path(data.chip_points).exists()):
        raise _fail("data.chip_points", data.chip_points, "an existing point file when data.chip_strategy=points")
    _check_nodata(data)
    _check_splits(data)
    if data.oversample_class is not None and data.oversample_class not in classes:
        raise _fail("data.oversample_class", data.oversample_class, f"one of {classes}")


def _check_splits(data: DictConfig) -> None:
    """The split sources; their content (CRS, column, values) is checked when first read."""
    vector = data.get("split_vector")
    if vector is not None:
        _check_files("data.split_vector", vector)
        if not str(data.get("split_column") or "").strip():
            raise _fail("data.split_column", data.get("split_column"),
                        "the name of the column of data.split_vector holding train/val/test")
    scenes = data.get("split_scenes") or {}
    for split in ("val", "test"):
        files = scenes.get(split) or {}
        given = {k: files.get(k) for k in ("image", "labels") if files.get(k) is not None}
        if not given:
            continue
        for key in ("image", "labels"):
            if key not in given:
                raise ConfigError(
                    f"data.split_scenes.{split}.{key} is required when data.split_scenes.{split} is used: "
                    f"give both the image and its labels, e.g. data.split_scenes.{split}.image=other.tif "
                    f"data.split_scenes.{split}.labels=other.gpkg."
                )
            _check_files(f"data.split_scenes.{split}.{key}", given[key])
        if isinstance(given["image"], DictConfig) != isinstance(data.get("image"), DictConfig) or (
                isinstance(given["image"], DictConfig) and len(given["image"]) != len(data.image)):
            raise ConfigError(
                f"data.split_scenes.{split}.image must have the training scene's dates: a mapping date → file "
                f"with as many dates as data.image ({len(data.image) if isinstance(data.image, DictConfig) else 1})"
                ", or a single raster when data.image is one."
            )
    if data.get("folds") is not None and (scenes.get("test") or {}).get("image") is not None:
        raise ConfigError(
            f"data.folds={data.folds} deals the test areas from the training scene, but data.split_scenes.test "
            "gives the test split from another scene: drop one of them (k-fold needs the test split on this scene)."
        )


MULTI_NODE_STRATEGIES = ("ddp", "fsdp", "deepspeed")  # Lightning strategies whose processes span machines
# trainer.precision values Lightning accepts (lightning.fabric.connector._PRECISION_INPUT)
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "transformer-engine",
              "transformer-engine-float16", "32", "16", "64", "bf16", 32, 16, 64)
CPU_REFUSED_PRECISIONS = ("16-mixed", "16", 16)  # Lightning would silently run bf16-mixed instead on a CPU


def check_precision(precision: Any, accelerator: Any, gpu_available: bool | None = None) -> None:
    """``trainer.precision``: a value Lightning accepts, and no float16 autocast on a CPU (Lightning would
    swap in bf16-mixed with a warning). ``gpu_available``: whether ``accelerator=auto`` finds a GPU
    (None before torch is loaded: only an explicit ``accelerator=cpu`` is known to be a CPU)."""
    if precision not in PRECISIONS:
        raise _fail("trainer.precision", precision, "one of 32-true (default), bf16-mixed (GPUs with bf16, "
                    "or CPUs), 16-mixed (GPUs), bf16-true, 16-true, 64-true")
    on_cpu = str(accelerator) == "cpu" or (str(accelerator) == "auto" and gpu_available is False)
    if on_cpu and precision in CPU_REFUSED_PRECISIONS:
        raise ConfigError(f"trainer.precision={precision} (float16 autocast) does not run on the CPU "
                          f"(trainer.accelerator={accelerator}{', no GPU found' if gpu_available is False else ''}): "
                          "use trainer.precision=bf16-mixed or 32-true there, or train on a GPU.")


def _check_trainer(trainer: DictConfig) -> None:
    """``trainer.precision``; ``trainer.num_nodes``: a positive count, and several machines only with a strategy
    that spans them."""
    check_precision(trainer.get("precision", "32-true"), trainer.get("accelerator", "auto"))
    nodes = trainer.get("num_nodes", 1)
    if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
        raise _fail("trainer.num_nodes", nodes, "a positive number of machines (1 for one machine)")
    if nodes == 1:
        return
    strategy = trainer.get("strategy", "auto")
    name = strategy.get("_target_", "") if isinstance(strategy, DictConfig) else str(strategy)
    if not any(s in name.lower() for s in MULTI_NODE_STRATEGIES) or "spawn" in name.lower():
        raise ConfigError(
            f"trainer.num_nodes={nodes} needs a distributed strategy whose processes span machines, but "
            f"trainer.strategy={name}: use trainer=ddp (GPUs) or trainer=ddp_cpu, or set trainer.strategy=ddp; "
            "launch one process per device with torchrun or SLURM (see the README: Multi-GPU and multi-node)."
        )


def _check_protocol(cfg: DictConfig) -> None:
    """The field's protocol: ``data.boundary_ignore_px`` (a ring of chip labels) and ``predict.mmu_ha`` (a sieve
    of the predicted map) each need the stage they change."""
    ring = cfg.data.get("boundary_ignore_px", 0) or 0
    if ring:
        if isinstance(ring, bool) or not isinstance(ring, int | float) or not 0 < ring <= 64:
            raise _fail("data.boundary_ignore_px", ring, "a ring width in pixels in [0, 64] (0: off; PRODES studies "
                        "ignore 2 px at 30 m)")
        if uses_datamodule(cfg.data):
            raise _fail("data.boundary_ignore_px", ring, f"0 with data={cfg.data.name}: the ring is cut from a "
                        "scene's label raster when its chips are made, and a datamodule's chips are its own")
        if 4 * ring >= cfg.data.chip_size:
            raise _fail("data.boundary_ignore_px", ring, f"under a quarter of data.chip_size={cfg.data.chip_size} "
                        "(a wider ring leaves chips without a pixel to learn from)")
    mmu = cfg.predict.get("mmu_ha", 0) or 0
    if mmu and "predict" not in cfg.stages:
        raise ConfigError(f"predict.mmu_ha={mmu} sieves the predicted map, but 'predict' is not among stages "
                          f"{list(cfg.stages)}: add it, or drop predict.mmu_ha (to sieve an existing map, predict "
                          "it again with stages=[predict] predict.checkpoint=...).")


def _check_predict(cfg: DictConfig) -> None:
    pred = cfg.predict
    check_predict_ranges(pred)
    needs_weights = set(WEIGHT_STAGES) & set(cfg.stages)
    if needs_weights and "fit" not in cfg.stages:
        if pred.checkpoint is None:
            raise ConfigError(
                f"stages {sorted(needs_weights)} without 'fit' need trained weights: set "
                "predict.checkpoint=RUN_DIR (or RUN_DIR/checkpoints/best.ckpt), or add fit to stages."
            )
        checkpoint_file(pred.checkpoint)
    if str(pred.checkpoint or "").lower().endswith((".onnx", ".pt2")) and (
            list(cfg.stages) != ["predict"] or pred.get("image") is None):
        raise ConfigError(f"predict.checkpoint={pred.checkpoint} is an exported model: it classifies a scene "
                          "given alone, stages=[predict] predict.image=SCENE.tif (train, test and a run's own "
                          "scene need the .ckpt).")
    if pred.get("image") is not None:
        image = OmegaConf.to_container(pred.image) if isinstance(pred.image, DictConfig | ListConfig) else pred.image
        check_scene_files(image)  # a list or a glob is several scenes (deepgeo_runner/geo/scene_sources.py)
        if "predict" not in cfg.stages:
            raise ConfigError("predict.image is set but 'predict' is not among stages: add it, "
                              "e.g. stages=[predict] predict.checkpoint=RUN/checkpoints/best.ckpt.")
    if pred.get("labels") is not None:
        if pred.get("image") is None:
            raise ConfigError("predict.labels scores a new scene: set predict.image (and predict.checkpoint) too.")
        _check_files("predict.labels", pred.labels)
    polygons = pred.get("polygons")
    if polygons is not None:
        known = list(cfg.data.classes) + (["background"] if cfg.data.background == "class" else [])
        unknown = [c for c in polygons if c not in known]
        if unknown and pred.get("image") is None:  # a checkpoint's classes are checked when read
            raise _fail("predict.polygons", list(polygons), f"class names from {known}")


def assess_only(cfg: DictConfig) -> bool:
    """``stages=[assess]`` (or with report): an existing map is assessed; no scene is read."""
    return is_assess_only(run_stages(cfg.stages, cfg.get("assess"), cfg.get("data"), cfg.get("export")))


def _check_assess(cfg: DictConfig) -> None:
    """The assess stage's files and ranges, and a map to assess, when the stage runs."""
    assess = cfg.assess
    stages = run_stages(cfg.stages, assess, cfg.data, cfg.get("export"))
    if "assess" not in stages:
        return
    check_assess_ranges(assess)
    reference = assess_reference(assess, cfg.data)  # 'auto': 'demo' on the built-in demo, else none
    if reference == DEMO_REFERENCE:  # the demo's truth, generated with the demo scene
        if not builtin_demo(cfg.data):
            raise _fail("assess.reference", DEMO_REFERENCE, "a reference layer file: 'demo' is the built-in "
                        "demo scene's truth, for data=demo only")
    for key in ("map", "strata", "reference", "sample"):
        value = reference if key == "reference" else assess.get(key)
        if value is not None and not (key == "reference" and value == DEMO_REFERENCE):
            _check_files(f"assess.{key}", value)
    if assess.get("map") is None and "predict" not in stages and not _run_prediction_exists(cfg):
        raise ConfigError(
            f"stages={stages} assess a class map without predicting one: give assess.map=MAP.tif (e.g. a "
            "run's prediction.tif), or add predict to stages."
        )
    ua = assess.users_accuracy
    if isinstance(ua, DictConfig) and not all(isinstance(k, str) for k in ua):
        raise _fail("assess.users_accuracy", OmegaConf.to_container(ua), "a mapping class name → accuracy")


def _check_export(cfg: DictConfig) -> None:
    """The export stage's formats, and the packages they need, before anything trains."""
    export = cfg.get("export")
    if export is None:
        return
    check_export_ranges(export)
    formats = [str(f) for f in export.formats or []]
    stages = run_stages(cfg.stages, cfg.get("assess"), cfg.get("data"), export)
    if "export" in stages and not formats:
        raise ConfigError(f"stages={stages} export the model but export.formats is empty: say which files, "
                          "e.g. export.formats=[onnx,mlm] (of onnx, pt2, mlm).")
    if formats and "export" not in stages:
        raise ConfigError(f"export.formats={formats} but stages={stages} does not export: add export to stages "
                          "(the default cycle ends with it when export.formats is set), or unset export.formats.")
    if "export" in stages and uses_datamodule(cfg.data):
        raise ConfigError(f"stages={stages}: a data={cfg.data.get('name')} checkpoint records no band names or "
                          "normalization statistics, so it cannot be exported; train with data=scene to export.")
    missing = sorted({p for f in formats for p in EXPORT_REQUIREMENTS[f] if importlib.util.find_spec(p) is None})
    if missing:
        raise ConfigError(f"export.formats={formats} needs the Python packages {missing}: pip install "
                          "'deepgeo-runner[export]'.")


def _run_prediction_exists(cfg: DictConfig) -> bool:
    """Whether the run directory already holds prediction.tif (a run repeated in its own folder)."""
    try:
        return (Path(str(cfg.paths.output_dir)) / "prediction.tif").is_file()
    except Exception:  # noqa: BLE001 - output_dir interpolates Hydra's runtime, absent outside a Hydra run
        return False


# ------------------------------------------------------------------------------ names and keys

HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")
SMP_MODEL_TARGETS = ("deepgeo_runner.ml.models.smp_model", "deepgeo_runner.ml.models.smp_models.smp_model")
SMP_MODEL_DEFAULTS = {"arch": "Unet", "encoder": "resnet18"}  # as ml.models.smp_models.smp_model
SMP_SET_BY_US = frozenset({"encoder_name", "encoder_weights", "in_channels", "classes"})  # smp_model passes them


def did_you_mean(word: str, choices: Any, prefix: str = "") -> str:
    """' Did you mean X?' with the closest of ``choices`` (difflib), or ''."""
    matches = difflib.get_close_matches(str(word), [str(c) for c in choices], n=3, cutoff=0.6)
    if not matches:
        return ""
    return " Did you mean " + " or ".join(f"{prefix}{m}" for m in matches) + "?"


def check_known_keys(cfg: DictConfig) -> None:
    """Every key of our schema'd groups exists in the schema, also those added with ``+key=value``.

    Hydra lets ``+data.chipsize=32`` add a key to a structured group; it would then be
    silently ignored. Third-party ``_target_`` groups are checked by :func:`check_targets`.
    """
    _check_schema_keys(cfg, RunConfig, "")


def _check_schema_keys(node: DictConfig, schema: type, prefix: str) -> None:
    hints = typing.get_type_hints(schema)
    fields = {f.name: hints[f.name] for f in dataclasses.fields(schema)}
    for key in node.keys():
        key = str(key)
        if not prefix and key == "hydra":
            continue
        if key not in fields:
            group = prefix.rstrip(".") or "the config"
            hint = did_you_mean(key, fields, prefix) or f" The keys of {group} are {sorted(fields)}."
            raise ConfigError(f"{prefix}{key} is not a key of {group}.{hint} (A key added with +{prefix}{key}=... "
                              "would otherwise be ignored.)")
        child_type = fields[key]
        if (dataclasses.is_dataclass(child_type) and not OmegaConf.is_interpolation(node, key)
                and isinstance(node.get(key), DictConfig)):
            _check_schema_keys(node[key], child_type, f"{prefix}{key}.")


def check_targets(cfg: DictConfig) -> None:
    """Each ``_target_`` of model, loss, optimizer, scheduler, trainer, logger, callbacks (nested ones too)
    exists, and each key beside it is a parameter of that class or function.

    The names are read from the sources (:mod:`deepgeo_runner.config.introspect`), nothing is
    imported; a target whose source cannot be read is only checked for its package.
    """
    for group in ("model", "loss", "optimizer", "scheduler", "trainer", "logger", "callbacks"):
        node = cfg.get(group)
        if isinstance(node, DictConfig | ListConfig):
            _check_target_tree(node, group, cfg.model if group == "model" else None)
    if uses_datamodule(cfg.data):
        _check_target_tree(cfg.data.datamodule, "data.datamodule", None)


def _check_target_tree(node: DictConfig | ListConfig, key: str, model: DictConfig | None) -> None:
    if isinstance(node, DictConfig):
        has_target = "_target_" in node and not OmegaConf.is_interpolation(node, "_target_")
        target = node.get("_target_") if has_target else None
        if isinstance(target, str):
            _check_target(target, f"{key}._target_")
            _check_target_keys(node, key, target)
        children = [(str(k), f"{key}.{k}") for k in node.keys()]
    else:
        children = [(i, f"{key}[{i}]") for i in range(len(node))]
    for child, child_key in children:
        if isinstance(child, str) and child.startswith("_"):
            continue
        if not OmegaConf.is_interpolation(node, child):
            value = node[child]
            if isinstance(value, DictConfig | ListConfig):
                _check_target_tree(value, child_key, None)


def _check_target(target: str, key: str) -> None:
    """The target's package is installed; a target of this package names a real class or function."""
    module, _, name = target.rpartition(".")
    package = target.split(".")[0]
    if importlib.util.find_spec(package) is None:
        raise ConfigError(f"{key}='{target}': no module '{package}' is installed or on the path: pip install it, "
                          f"or add the folder holding {package} to PYTHONPATH (PYTHONPATH=folder deepgeo ...)."
                          f"{did_you_mean(package, ['deepgeo_runner', 'torch', 'lightning', 'torchgeo'])}")
    if package != "deepgeo_runner":
        return  # other packages may build names at import time: their own error says it when built
    if not module or introspect.find_definition(module, name) is None:
        known = _our_targets(module)
        raise ConfigError(f"{key}='{target}' names nothing in deepgeo-runner.{did_you_mean(target, known)} "
                          f"Known in {module or package}: {sorted(t.rpartition('.')[2] for t in known)}.")


def _our_targets(module: str) -> list[str]:
    """Full names a model/loss ``_target_`` of this package may take near ``module``."""
    candidates = [module, "deepgeo_runner.ml.models", "deepgeo_runner.ml.losses"]
    for candidate in candidates:
        names = introspect.public_names(candidate) if candidate else None
        if names:
            return [f"{candidate}.{n}" for n in names if n[:1].isupper() or n.endswith("_model")]
    return []


def _check_target_keys(node: DictConfig, key: str, target: str) -> None:
    """Every key beside ``_target_`` is a parameter of it (when its source says which)."""
    params = introspect.trainer_params(target) or introspect.target_params(target)
    label = target
    if target in SMP_MODEL_TARGETS and params is not None:
        arch = str(node.get("arch") or SMP_MODEL_DEFAULTS["arch"])
        encoder = str(node.get("encoder") or SMP_MODEL_DEFAULTS["encoder"])
        arch_params = introspect.smp_architecture_params(arch)
        if arch_params is None or _is_timm_encoder(encoder):  # timm encoders take any keyword
            return
        # smp hands unknown keywords to get_encoder, which drops them for its own encoders: check them here
        params = introspect.Params(params.names | (arch_params.names - SMP_SET_BY_US), False)
        label = f"smp {arch} (via {target})"
    if params is None or params.any_keyword:
        return
    unknown = [str(k) for k in node.keys() if str(k) not in HYDRA_KEYS and str(k) not in params.names]
    if unknown:
        name = unknown[0]
        listing = f" It takes {sorted(params.names)}." if len(params.names) <= 15 else ""
        raise ConfigError(f"{key}.{name} is not a parameter of {label}.{did_you_mean(name, params.names, key + '.')}"
                          f"{listing}")


def _is_timm_encoder(encoder: str) -> bool:
    return encoder.startswith("tu-") or encoder.startswith(introspect.SMP_TIMM_UNIVERSAL_PREFIXES)


def check_smp_names(model: DictConfig) -> None:
    """``model.arch`` and ``model.encoder`` of an smp model (model=smp, model=unet) exist in smp/timm.

    Read from the sources in milliseconds; a name not found there is confirmed by importing
    smp or timm (seconds) before it is refused, so a package layout this reader does not know
    costs time, never a wrong error.
    """
    if not isinstance(model, DictConfig) or model.get("_target_") not in SMP_MODEL_TARGETS:
        return
    arch = str(model.get("arch") or SMP_MODEL_DEFAULTS["arch"])
    archs = introspect.smp_architectures()
    if archs is not None and arch.lower() not in {a.lower() for a in archs}:
        raise ConfigError(f"model.arch={arch!r} is not a segmentation-models-pytorch architecture."
                          f"{did_you_mean(arch, archs)} Available: {list(archs)}.")
    encoder = str(model.get("encoder") or SMP_MODEL_DEFAULTS["encoder"])
    if _is_timm_encoder(encoder):
        _check_timm_encoder(encoder)
        return
    encoders = introspect.smp_encoders()
    if encoders is not None and encoder in encoders:
        return
    encoders = introspect.smp_encoders_imported()
    if encoder not in encoders:
        raise ConfigError(
            f"model.encoder={encoder!r} is not a segmentation-models-pytorch encoder.{did_you_mean(encoder, encoders)}"
            " Any timm model works as tu-<name> (e.g. model.encoder=tu-convnext_tiny); smp's own encoders: "
            f"{', '.join(sorted(encoders)[:12])}, ..."
        )


def _check_timm_encoder(encoder: str) -> None:
    name = encoder[3:] if encoder.startswith("tu-") else encoder.replace("timm-", "", 1)
    if encoder.startswith("timm-") and "mobilenetv3" in name:
        name = "tf_" + name  # as smp's get_encoder renames it
    name = name.split(".")[0]  # a pretrained tag (resnet50.a1_in1k) is not part of the name
    if ":" in name:  # hf-hub:... : resolved by timm when built
        return
    models = introspect.timm_models()
    if models is not None and name in models:
        return
    models = introspect.timm_models_imported()
    if name not in models:
        raise ConfigError(f"model.encoder={encoder!r}: timm has no model {name!r}."
                          f"{did_you_mean(name, models, 'tu-')} (tu-<name> takes any name of timm.list_models()).")
