"""Checks of a composed config that the schema's types cannot express.

They run in well under a second, before torch or Lightning is imported and before any data
is read, so a typo costs seconds rather than a failed run hours later. Every message names
the key, the bad value and what would be accepted.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

from deepgeo_runner.checkpoint_path import checkpoint_file
from deepgeo_runner.config.schema import STAGES
from deepgeo_runner.errors import ConfigError
from deepgeo_runner.geo.indices import check_indices
from deepgeo_runner.geo.normalize import METHODS

AUGMENTATIONS = ("none", "d4", "d4_expand")
D4_NAMES = ("identity", "rot90", "rot180", "rot270", "transpose", "flip_v", "antitranspose", "flip_h")
BACKGROUND_MODES = ("ignore", "class")
RESAMPLING = ("nearest", "bilinear", "cubic", "average", "mode")  # as geo.scene.RESAMPLING
OTHER_CLASSES = ("background", "ignore")  # as geo.rasterize.OTHERS (not imported: geopandas is slow)
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
DATAMODULE_STAGES = ("fit", "test")  # what applies to chips that a datamodule yields ready-made


def _fail(key: str, value: object, accepted: str) -> ConfigError:
    return ConfigError(f"{key}={value!r} is not valid: expected {accepted}.")


def validate_config(cfg: DictConfig) -> None:
    """Raise :class:`ConfigError` on the first problem found, naming the key."""
    missing = sorted(k for k in OmegaConf.missing_keys(cfg) if not k.startswith("hydra"))
    for key in missing:
        hint = _MISSING_HINTS.get(key, "a value")
        raise ConfigError(f"{key} is required (data={cfg.data.get('name', '?')}): give {hint}.")
    _check_stages(cfg)
    if cfg.test_split not in ("train", "val", "test"):
        raise _fail("test_split", cfg.test_split, "one of ['train', 'val', 'test']")
    if uses_datamodule(cfg.data):
        _check_datamodule(cfg)
    else:
        _check_data(cfg.data)
        if cfg.preprocessing.normalization not in METHODS:
            raise _fail("preprocessing.normalization", cfg.preprocessing.normalization, f"one of {list(METHODS)}")
        _check_preprocessing(cfg)
    if cfg.augmentation.name not in AUGMENTATIONS:
        raise _fail("augmentation.name", cfg.augmentation.name, f"one of {list(AUGMENTATIONS)}")
    bad_ops = [op for op in cfg.augmentation.expand_ops if op not in D4_NAMES]
    if bad_ops:
        raise _fail("augmentation.expand_ops", list(cfg.augmentation.expand_ops), f"names from {list(D4_NAMES)}")
    if cfg.augmentation.brightness < 0 or cfg.augmentation.noise_std < 0:
        raise _fail("augmentation.brightness/noise_std",
                    (cfg.augmentation.brightness, cfg.augmentation.noise_std), "non-negative strengths")
    for group in ("model", "loss", "trainer"):
        node = cfg.get(group)
        if not isinstance(node, DictConfig) or "_target_" not in node:
            raise ConfigError(f"{group}: needs a '_target_' naming the class to build (see conf/{group}/).")
    _check_predict(cfg)
    _check_train(cfg)


MONITORED = ("val_f1_macro", "val_iou_macro", "val_accuracy", "val_loss", "train_loss")  # logged by lit.module
MONITOR_MODES = ("auto", "min", "max")


def monitor_mode(train: DictConfig) -> str:
    """The direction of ``train.monitor``: ``train.monitor_mode``, or for ``auto`` min for a loss, else max."""
    mode = str(train.get("monitor_mode", "auto"))
    if mode != "auto":
        return mode
    return "min" if "loss" in str(train.monitor) else "max"


def _check_train(cfg: DictConfig) -> None:
    """The monitored score exists and its direction is known, before any data is read."""
    train = cfg.train
    if train.monitor not in MONITORED:
        import difflib

        close = difflib.get_close_matches(str(train.monitor), MONITORED, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise _fail("train.monitor", train.monitor, f"a score the training logs, one of {list(MONITORED)}{hint}")
    mode = train.get("monitor_mode", "auto")
    if mode not in MONITOR_MODES:
        raise _fail("train.monitor_mode", mode, f"one of {list(MONITOR_MODES)} (auto: min for a loss, else max)")
    is_loss = "loss" in str(train.monitor)
    if monitor_mode(train) != ("min" if is_loss else "max"):
        worst = "highest loss" if is_loss else f"lowest {train.monitor}"
        raise ConfigError(f"train.monitor={train.monitor} with train.monitor_mode={mode} would keep the checkpoint "
                          f"of the {worst}: use train.monitor_mode={'min' if is_loss else 'max'} (or auto).")


def uses_datamodule(data: DictConfig) -> bool:
    """True when chips come from a LightningDataModule by ``_target_`` (data=torchgeo), not from a scene."""
    return data.get("datamodule") is not None


def _check_datamodule(cfg: DictConfig) -> None:
    """data=torchgeo: a datamodule to build, classes and bands to size the network, fit/test only."""
    data, name = cfg.data, cfg.data.get("name", "torchgeo")
    node = data.datamodule
    if not isinstance(node, DictConfig) or not isinstance(node.get("_target_"), str):
        raise ConfigError(f"data.datamodule needs a '_target_' naming the class to build: give "
                          f"{_MISSING_HINTS['data.datamodule._target_']}.")
    package = node._target_.split(".")[0]
    if importlib.util.find_spec(package) is None:  # the top package only: nothing is imported
        raise ConfigError(f"data.datamodule._target_='{node._target_}': no module '{package}' is installed "
                          f"(pip install {package}), or add its folder to PYTHONPATH.")
    other = [s for s in cfg.stages if s not in DATAMODULE_STAGES]
    if other and list(cfg.stages) != list(STAGES):  # the whole cycle (the default) runs what applies
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
    from deepgeo_runner.geo.indices import feature_index_names
    from deepgeo_runner.geo.normalize import NormOptions

    pre, data = cfg.preprocessing, cfg.data
    band_names = list(data.band_names)
    if not band_names and data.get("sensor"):
        from deepgeo_runner.geo.sensors import sensor_band_names

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
        str(pre.normalization), bool(pre.get("norm_per_band", True)),
        tuple(float(v) for v in pre.get("norm_range", [0.0, 1.0])),
        tuple(float(v) for v in pre.get("norm_percentiles", [2.0, 98.0])),
        float(pre.get("norm_constant", 10000.0)), int(pre.get("norm_samples", 1_000_000)),
    ).check()
    for key in ("norm_range", "norm_percentiles"):
        if pre.get(key) is not None and len(pre[key]) != 2:
            raise _fail(f"preprocessing.{key}", list(pre[key]), "two numbers [low, high]")
    if pre.get("window", 1024) < 64:
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
        from deepgeo_runner.geo.sensors import sensor_band_names

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
    if data.get("resampling", "nearest") not in RESAMPLING:
        raise _fail("data.resampling", data.resampling, f"one of {list(RESAMPLING)}")
    if data.get("other_classes", "background") not in OTHER_CLASSES:
        raise _fail("data.other_classes", data.other_classes, f"one of {list(OTHER_CLASSES)}")
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


def _check_data(data: DictConfig) -> None:
    if data.name != "demo" or data.image is not None:
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
    if data.background not in BACKGROUND_MODES:
        raise _fail("data.background", data.background, f"one of {list(BACKGROUND_MODES)}")
    if data.chip_size < 8:
        raise _fail("data.chip_size", data.chip_size, "at least 8 pixels")
    if data.block_size is not None and data.block_size < data.chip_size:
        raise _fail("data.block_size", data.block_size, f"at least data.chip_size ({data.chip_size})")
    fractions = list(data.split_fractions)
    if len(fractions) != 3 or any(f < 0 for f in fractions) or fractions[0] <= 0:
        raise _fail("data.split_fractions", fractions, "three non-negative shares [train, val, test] with train > 0")
    if data.train_chips < 1:
        raise _fail("data.train_chips", data.train_chips, "a positive number of chips")
    if not 0 <= data.min_valid_fraction <= 1:
        raise _fail("data.min_valid_fraction", data.min_valid_fraction, "a fraction in [0, 1]")
    if data.batch_size < 1:
        raise _fail("data.batch_size", data.batch_size, "a positive batch size")
    if data.chip_strategy not in ("random", "grid", "points"):
        raise _fail("data.chip_strategy", data.chip_strategy, "one of ['random', 'grid', 'points']")
    if data.chip_strategy == "points" and (data.chip_points is None or not Path(data.chip_points).exists()):
        raise _fail("data.chip_points", data.chip_points, "an existing point file when data.chip_strategy=points")
    if data.split_buffer is not None and data.split_buffer < 0:
        raise _fail("data.split_buffer", data.split_buffer, "a non-negative number of pixels")
    _check_splits(data)
    if data.oversample_class is not None and data.oversample_class not in classes:
        raise _fail("data.oversample_class", data.oversample_class, f"one of {classes}")
    if not 0 <= data.oversample_fraction <= 1:
        raise _fail("data.oversample_fraction", data.oversample_fraction, "a fraction in [0, 1]")
    if data.train_stride is not None and data.train_stride < 1:
        raise _fail("data.train_stride", data.train_stride, "a positive stride in pixels")
    if data.eval_stride is not None and data.eval_stride < 1:
        raise _fail("data.eval_stride", data.eval_stride, "a positive stride in pixels")


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


def _check_predict(cfg: DictConfig) -> None:
    pred = cfg.predict
    if not 0 <= pred.overlap < 1:
        raise _fail("predict.overlap", pred.overlap, "a fraction in [0, 1)")
    if pred.window is not None and pred.window < 8:
        raise _fail("predict.window", pred.window, "at least 8 pixels")
    needs_weights = {"test", "predict"} & set(cfg.stages)
    if needs_weights and "fit" not in cfg.stages:
        if pred.checkpoint is None:
            raise ConfigError(
                f"stages {sorted(needs_weights)} without 'fit' need trained weights: set "
                "predict.checkpoint=RUN_DIR (or RUN_DIR/checkpoints/best.ckpt), or add fit to stages."
            )
        checkpoint_file(pred.checkpoint)
    if pred.get("blend", "hann") not in ("hann", "center"):
        raise _fail("predict.blend", pred.blend, "one of ['hann', 'center']")
    if pred.get("probabilities", "none") not in ("none", "float16", "uint8"):
        raise _fail("predict.probabilities", pred.probabilities, "one of ['none', 'float16', 'uint8']")
    if pred.get("min_area_ha", 0.0) < 0:
        raise _fail("predict.min_area_ha", pred.min_area_ha, "a non-negative area in hectares")
    if pred.get("image") is not None:
        _check_files("predict.image", pred.image)
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
