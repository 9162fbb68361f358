"""The task layer: the only place that reads the config tree and chains the stages.

It is safe to run again in the same run directory: Lightning relaunches the whole command
for DDP ranks > 0, so every rank passes through here. Expensive stages come from the cache
(built by rank 0 before the ranks start), and only rank 0 writes files shared by the run.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from omegaconf import DictConfig, ListConfig, OmegaConf

from deepgeo_runner.atomic import write_text_atomic
from deepgeo_runner.cache import cached_stage, file_fingerprint, hash_payload, vector_fingerprint
from deepgeo_runner.config.validate import DATAMODULE_STAGES, uses_datamodule, validate_config
from deepgeo_runner.errors import ConfigError, StageError
from deepgeo_runner.geo.chips import split_blocks
from deepgeo_runner.pipeline.chips import (
    ChipPlan,
    ChipStore,
    build_chip_store,
    load_chip_store,
    target_lut,
)
from deepgeo_runner.pipeline.labels import rasterize_labels
from deepgeo_runner.pipeline.prepare import PreparedScene, load_prepared, prepare_scene
from deepgeo_runner.provenance import write_provenance

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when a stage's output format changes
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
    band_names: list[str] = field(default_factory=list)
    prepared: PreparedScene | None = None
    labels: Path | None = None
    chips: ChipStore | None = None
    checkpoint: Path | None = None
    metrics: dict | None = None
    prediction: Path | None = None
    prepare_extras: dict[str, Any] = field(default_factory=dict)
    cache_keys: dict[str, str] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)


def run(cfg: DictConfig, run_dir: str | Path) -> Artifacts:
    """Run the configured stages of the cycle; return what they produced."""
    validate_config(cfg)
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
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
        if rank == 0:
            _provenance(cfg, run_dir, art, classes)
        return art
    if stages == ["predict"] and cfg.predict.get("image"):  # a checkpoint applied to a new scene
        if rank == 0:
            timed("predict", apply_checkpoint_stage, cfg, run_dir, art)
            _provenance(cfg, run_dir, art, classes)
        return art
    timed("inputs", _resolve_inputs, cfg, cache_dir, art)
    split_map = _split_map(cfg, art.image)
    timed("prepare", _prepare, cfg, cache_dir, art, split_map, "prepare" in stages)
    timed("rasterize", _rasterize, cfg, cache_dir, art, classes, "rasterize" in stages)
    needs_chips = bool({"chips", "fit", "test"} & set(stages))
    if needs_chips:
        timed("chips", _chips, cfg, cache_dir, art, classes, split_map, "chips" in stages)
    if {"fit", "test", "predict"} & set(stages):
        timed("fit_test_predict", _learn, cfg, run_dir, art, classes, stages, rank)
    if rank == 0 and "report" in stages:
        from deepgeo_runner.pipeline.report import write_report

        timed("report", write_report, run_dir, art, classes, cfg.data.band_names)
    if rank == 0:
        _provenance(cfg, run_dir, art, classes)
    return art


def _stages(cfg: DictConfig) -> list[str]:
    """The stages to run: of the whole cycle, a datamodule's chips take only fit and test (validated)."""
    stages = list(cfg.stages)
    return [s for s in stages if s in DATAMODULE_STAGES] if uses_datamodule(cfg.data) else stages


def _provenance(cfg: DictConfig, run_dir: Path, art: Artifacts, classes: ClassTable) -> None:
    inputs = {}
    for name, path in (("image", art.image), ("labels", art.labels_source)):
        if path is not None:
            inputs[name] = {"path": str(path), "sha256": file_fingerprint(path)}
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
            art.band_names = sensor_band_names(str(data.sensor), src.count)


def _image_list(data: DictConfig) -> list[Path]:
    images = data.image
    if isinstance(images, str | Path):
        return [Path(images)]
    return [Path(p) for p in images]


def _analysis_image(cfg: DictConfig, cache_dir: Path, art: Artifacts) -> Path:
    """The input raster itself, or (mosaic / crop / AOI / reprojection) a cached scene on the
    analysis grid, so that every later stage reads one raster on one grid."""
    from deepgeo_runner.geo.scene import SceneOptions, build_scene

    data = cfg.data
    images = _image_list(data)
    res = data.get("resolution")
    if res is not None:
        res = [float(res)] * 2 if isinstance(res, int | float) else [float(r) for r in res]
    options = SceneOptions(
        bbox=tuple(data.bbox) if data.get("bbox") is not None else None,
        aoi=data.get("aoi"), crs=data.get("crs"), resolution=tuple(res) if res else None,
        resampling=str(data.get("resampling", "nearest")), nodata=data.nodata,
    )
    if options.is_identity(len(images)):
        return images[0]
    payload = {
        "v": CACHE_VERSION, "images": [file_fingerprint(p) for p in images],
        "bbox": list(options.bbox) if options.bbox else None,
        "aoi": vector_fingerprint(options.aoi) if options.aoi else None,
        "crs": options.crs, "resolution": res, "resampling": options.resampling, "nodata": data.nodata,
    }

    def build(tmp: Path) -> None:
        build_scene(images, tmp / "scene.tif", options, window=int(cfg.preprocessing.get("window", 1024)))

    entry, key, reused = _entry(cache_dir, "scene", payload, build, True)
    art.cache_keys["scene"], art.reused["scene"] = key, reused
    return entry / "scene.tif"


def _split_map(cfg: DictConfig, image: Path) -> np.ndarray:
    with rasterio.open(image) as src:
        shape = (src.height, src.width)
    block = cfg.data.block_size or 2 * cfg.data.chip_size
    return split_blocks(shape, int(block), list(cfg.data.split_fractions), int(cfg.seed))


def _split_payload(cfg: DictConfig) -> dict[str, Any]:
    data = cfg.data
    return {"block": data.block_size or 2 * data.chip_size,
            "fractions": list(data.split_fractions), "seed": int(cfg.seed)}


def _entry(cache_dir: Path, stage: str, payload: dict, build, run_stage: bool):
    """Build (or reuse) a cache entry; when the stage is not requested, only reuse."""
    if run_stage:
        return cached_stage(cache_dir, stage, payload, build)
    entry = cache_dir / stage / hash_payload(payload)
    if not (entry / "_complete.json").exists():
        raise StageError(
            f"a later stage needs the output of '{stage}', which is not in the cache "
            f"({entry}): add '{stage}' to stages, e.g. stages=[{stage},...]."
        )
    return entry, hash_payload(payload), True


def _prepare(cfg, cache_dir: Path, art: Artifacts, split_map: np.ndarray, run_stage: bool) -> None:
    from deepgeo_runner.geo.normalize import NormOptions

    pre, data = cfg.preprocessing, cfg.data
    norm = NormOptions(
        method=str(pre.normalization), per_band=bool(pre.get("norm_per_band", True)),
        out_range=tuple(float(v) for v in pre.get("norm_range", [0.0, 1.0])),
        percentiles=tuple(float(v) for v in pre.get("norm_percentiles", [2.0, 98.0])),
        constant=float(pre.get("norm_constant", 10000.0)), samples=int(pre.get("norm_samples", 1_000_000)),
    )
    extras = {
        "expressions": _plain(pre.get("expressions")) or None,
        "index_constants": _plain(pre.get("index_constants")) or None,
        "keep_bands": _plain(pre.get("keep_bands")),
        "scale": _plain(data.get("scale")), "offset": _plain(data.get("offset")),
    }
    payload = {
        "v": CACHE_VERSION, "image": file_fingerprint(art.image), "bands": art.band_names,
        "indices": list(pre.indices), "normalization": pre.normalization,
        "nodata": cfg.data.nodata, "split": _split_payload(cfg),
    }
    if norm != NormOptions(method=norm.method):  # keys of old entries stay valid for defaults
        payload["norm"] = {"per_band": norm.per_band, "range": list(norm.out_range),
                           "percentiles": list(norm.percentiles), "constant": norm.constant,
                           "samples": norm.samples}
    payload.update({k: v for k, v in extras.items() if v is not None})
    art.prepare_extras = {k: v for k, v in extras.items() if v is not None}

    def build(tmp: Path) -> None:
        prepare_scene(art.image, tmp, art.band_names, list(pre.indices), norm,
                      split_map == 0, cfg.data.nodata, window=int(pre.get("window", 1024)), **extras)

    entry, key, reused = _entry(cache_dir, "prepare", payload, build, run_stage)
    art.prepared = load_prepared(entry)
    art.cache_keys["prepare"], art.reused["prepare"] = key, reused


def _plain(value: Any) -> Any:
    """A config value as plain Python (lists from ListConfig), for payloads and numpy."""
    return OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value


def _rasterize(cfg, cache_dir: Path, art: Artifacts, classes: ClassTable, run_stage: bool) -> None:
    data = cfg.data
    groups = _plain(data.get("class_groups")) or None
    others = str(data.get("other_classes", "background"))
    all_touched = bool(data.get("all_touched", False))
    payload = {
        "v": CACHE_VERSION, "labels": vector_fingerprint(art.labels_source),
        "grid": art.cache_keys["prepare"], "column": data.class_column,
        "classes": list(data.classes),
        "values": list(data.class_values) if data.class_values is not None else None,
        "colors": classes.colors,
    }
    if groups or others != "background" or all_touched:  # keys of old entries stay valid for defaults
        payload.update({"groups": groups, "others": others, "all_touched": all_touched})

    def build(tmp: Path) -> None:
        colors = classes.colors[1:] if classes.background_is_class else classes.colors
        rasterize_labels(art.labels_source, art.prepared.path, tmp / "labels.tif",
                         list(data.classes), colors, data.class_column,
                         list(data.class_values) if data.class_values is not None else None,
                         all_touched=all_touched, class_groups=groups, others=others)

    entry, key, reused = _entry(cache_dir, "rasterize", payload, build, run_stage)
    art.labels = entry / "labels.tif"
    art.cache_keys["rasterize"], art.reused["rasterize"] = key, reused


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
        buffer=int(data.split_buffer if data.split_buffer is not None else data.chip_size),
        focus_class=focus, focus_fraction=float(data.oversample_fraction),
        points_path=data.chip_points,
    )


def _chips(cfg, cache_dir: Path, art: Artifacts, classes: ClassTable, split_map, run_stage: bool) -> None:
    plan = chip_plan(cfg, classes)
    points = vector_fingerprint(plan.points_path) if plan.points_path else None
    payload = {
        "v": CACHE_VERSION, "prepare": art.cache_keys["prepare"],
        "rasterize": art.cache_keys["rasterize"], "plan": plan.__dict__, "points": points,
        "split": _split_payload(cfg), "background": cfg.data.background,
    }
    if art.prepared.stats.per_chip:
        payload["per_chip"] = True

    def build(tmp: Path) -> None:
        build_chip_store(
            art.prepared.path, art.labels, tmp, split_map, plan,
            target_lut(classes.n_classes, classes.background_is_class), len(classes.names),
            int(cfg.seed), per_chip=art.prepared.stats.per_chip,
        )

    entry, key, reused = _entry(cache_dir, "chips", payload, build, run_stage)
    art.chips = load_chip_store(entry)
    art.cache_keys["chips"], art.reused["chips"] = key, reused


def _instantiate(node: DictConfig, group: str, **kwargs: Any) -> Any:
    """hydra's instantiate, with the underlying cause in the message instead of buried."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(
            f"{group}: cannot build '{node.get('_target_')}': {type(cause).__name__}: {cause}"
        ) from exc


def _build_module(cfg, classes: ClassTable, in_channels: int, meta: dict, chips_dir: Path | None = None):
    """The LightningModule around the configured network (torch imported only now).

    ``meta`` is what prediction needs later (stored in every checkpoint); ``chips_dir`` gives
    the training labels' pixel counts to a loss whose class weights are computed from them.
    """
    import lightning.pytorch as pl

    from deepgeo_runner.lit.module import SegmentationModule
    from deepgeo_runner.ml.losses import needs_class_counts, set_class_counts

    pl.seed_everything(int(cfg.seed), workers=True, verbose=False)
    net = _instantiate(cfg.model, "model", **_model_inputs(cfg, in_channels), classes=len(classes.names))
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
        set_class_counts(loss, _train_class_counts(chips_dir, len(classes.names)))
    meta = {"class_names": classes.names, "class_ids": classes.ids, "class_colors": classes.colors,
            "model": OmegaConf.to_container(cfg.model, resolve=True), **meta}
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
    dates = len(cfg.data.get("dates") or []) or 1
    if n_features % dates:
        raise ConfigError(
            f"model={cfg.model._target_} is multi-temporal but the stack's {n_features} bands "
            f"are not {dates} dates (data.dates) of equal band count."
        )
    return {"in_channels": n_features // dates, "dates": dates}


def _train_class_counts(chips_dir: Path, n_classes: int) -> list[int]:
    """Labelled pixels per class in the training chips (their histograms in chips.json)."""
    records = json.loads((Path(chips_dir) / "chips.json").read_text())["chips"]
    counts = np.zeros(n_classes, dtype=np.int64)
    for rec in records:
        if rec["split"] == "train":
            counts += np.asarray(rec["histogram"][:n_classes], dtype=np.int64)
    return counts.tolist()


def _learn(cfg, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str], rank: int) -> None:
    """fit / test / predict: the stages that need torch."""
    prepared = art.prepared
    meta = {
        "features": list(prepared.feature_names), "band_names": art.band_names,
        "indices": list(cfg.preprocessing.indices), "stats": prepared.stats.to_dict(),
        "chip_size": int(cfg.data.chip_size), **art.prepare_extras,
    }
    module = _build_module(cfg, classes, prepared.n_features, meta, art.chips.path if art.chips else None)
    checkpoint = Path(cfg.predict.checkpoint) if cfg.predict.checkpoint else None
    if {"fit", "test"} & set(stages):
        from deepgeo_runner.lit.datamodule import ChipDataModule

        datamodule = ChipDataModule(art.chips.path, int(cfg.data.batch_size), int(cfg.data.num_workers),
                                    _augment_plan(cfg), int(cfg.seed), resident=bool(cfg.data.resident),
                                    test_split=str(cfg.test_split))
        checkpoint, rank = _fit_test(cfg, run_dir, art, module, datamodule, stages, checkpoint)
    art.checkpoint = checkpoint
    if rank == 0 and "predict" in stages:
        _predict(cfg, run_dir, art, classes, module, checkpoint)


def _augment_plan(cfg: DictConfig):
    """The ``augmentation`` group as the plan the datamodules apply on the device."""
    from deepgeo_runner.lit.datamodule import AugmentPlan

    aug = cfg.augmentation
    return AugmentPlan(aug.name, tuple(aug.expand_ops), float(aug.brightness), float(aug.noise_std))


def _learn_datamodule(cfg, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str]) -> None:
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
    checkpoint = Path(cfg.predict.checkpoint) if cfg.predict.checkpoint else None
    art.checkpoint, _ = _fit_test(cfg, run_dir, art, module, datamodule, stages, checkpoint,
                                  shard_here=False)


def _fit_test(cfg, run_dir: Path, art: Artifacts, module, datamodule, stages: list[str],
              checkpoint: Path | None, shard_here: bool = True):
    """Train and/or test with Lightning; return the best checkpoint and this process's rank.

    ``shard_here``: the datamodule shards by rank itself (our chip store); otherwise Lightning
    adds its distributed sampler (a datamodule by ``_target_``).
    """
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from deepgeo_runner.pipeline import train

    monitor = cfg.train.monitor
    callbacks = [ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best",
                                 monitor=monitor, mode="max", save_last=True)]
    if cfg.train.early_stopping_patience is not None:
        callbacks.append(EarlyStopping(monitor=monitor, mode="max",
                                       patience=int(cfg.train.early_stopping_patience)))
    logger = _instantiate(cfg.logger, "logger") if cfg.logger else False
    trainer = _instantiate(cfg.trainer, "trainer", callbacks=callbacks, logger=logger,
                           default_root_dir=str(run_dir), use_distributed_sampler=not shard_here)
    if "fit" in stages:
        last = run_dir / "checkpoints" / "last.ckpt"
        resume = last if cfg.train.resume and last.is_file() else None
        if resume is not None:
            log.info("fit: resuming from %s", resume)
        checkpoint = train.fit(trainer, module, datamodule, resume)
    if "test" in stages:
        scores = train.test(trainer, module, datamodule, checkpoint)
        scores["split"] = str(cfg.test_split)
        if trainer.global_rank == 0:
            write_text_atomic(run_dir / "metrics.json", json.dumps(scores, indent=2))
        art.metrics = scores
    return checkpoint, trainer.global_rank


def _predict(
    cfg, run_dir: Path, art: Artifacts, classes: ClassTable, module, checkpoint: Path | None,
    rank: int = 0, world_size: int = 1,
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
        art.prediction = _predict_new_scene(cfg, run_dir, module.net, meta or module.inference_meta)
        return
    stats = art.prepared.stats
    art.prediction = predict_scene(
        module.net, art.prepared.path, run_dir / "prediction.tif",
        window=int(cfg.predict.window or cfg.data.chip_size), overlap=float(cfg.predict.overlap),
        batch_size=int(cfg.predict.batch_size), class_ids=classes.ids,
        class_names=classes.names, class_colors=classes.colors, device=_predict_device(cfg),
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
    import torch

    return "cuda" if torch.cuda.is_available() and cfg.trainer.get("accelerator") != "cpu" else "cpu"


def _polygons(cfg: DictConfig, prediction: Path) -> None:
    """``predict.polygons``: the chosen classes as polygons with areas, and per-class totals."""
    if not cfg.predict.polygons:
        return
    from deepgeo_runner.geo.polygonize import polygonize_classes

    polygonize_classes(prediction, prediction.with_name("prediction_polygons.gpkg"),
                       list(cfg.predict.polygons), float(cfg.predict.min_area_ha))


def _predict_new_scene(cfg: DictConfig, run_dir: Path, net, meta: dict) -> Path:
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
        device=_predict_device(cfg), standardize_windows=prepared.stats.per_chip,
        **predict_options(cfg),
    )
    _polygons(cfg, prediction)
    return prediction


def apply_checkpoint_stage(cfg: DictConfig, run_dir: str | Path, art: Artifacts | None = None) -> Artifacts:
    """``deepgeo stages=[predict] predict.checkpoint=CKPT predict.image=NEW.tif``: the whole stage
    from the checkpoint alone (no data preparation of the training scene, no model config).

    ``run`` should call this instead of the data stages when ``predict.image`` is set and
    ``predict`` is the only stage.
    """
    from deepgeo_runner.pipeline.apply import build_net, read_checkpoint

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    art = art or Artifacts()
    weights, meta = read_checkpoint(cfg.predict.checkpoint)
    start = time.perf_counter()
    art.checkpoint = Path(cfg.predict.checkpoint)
    art.image = Path(cfg.predict.image)
    art.prediction = _predict_new_scene(cfg, run_dir, build_net(meta, weights), meta)
    art.timings["predict"] = round(time.perf_counter() - start, 2)
    return art

