"""The run's options as each stage takes them: the one place where the typed run config
(:class:`~deepgeo_runner.config.schema.RunConfig`) becomes a stage's option dataclass or keyword
arguments, and where every derived default (prediction window, split block, buffer, strides) is
resolved, once. Stages never see the run config; the task modules call these.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from deepgeo_runner.config.schema import DataConfig, RunConfig, assess_reference, run_stages
from deepgeo_runner.core.checkpoint_path import checkpoint_file
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.geo.label_layout import raster_label_layout
from deepgeo_runner.geo.nodata import one_nodata
from deepgeo_runner.geo.normalize import NormOptions
from deepgeo_runner.geo.stitch import prediction_window
from deepgeo_runner.pipeline.run_state import RunState
from deepgeo_runner.stages.chips import ChipPlan, target_lut

log = logging.getLogger(__name__)


def norm_options(opts: RunConfig) -> NormOptions:
    """The ``preprocessing`` group's normalization as the prepare stage takes it."""
    pre = opts.preprocessing
    return NormOptions(
        method=str(pre.normalization), per_band=bool(pre.norm_per_band),
        out_range=tuple(float(v) for v in pre.norm_range),
        percentiles=tuple(float(v) for v in pre.norm_percentiles),
        constant=float(pre.norm_constant), samples=int(pre.norm_samples),
    )


def prepare_extras(opts: RunConfig) -> dict[str, Any]:
    """The optional keyword arguments of ``prepare_scene`` that the config sets."""
    pre, data = opts.preprocessing, opts.data
    return {
        "expressions": pre.expressions or None,
        "index_constants": pre.index_constants or None,
        "keep_bands": pre.keep_bands,
        "scale": data.scale, "offset": data.offset,
    }


def label_options(data: DataConfig) -> dict[str, Any]:
    """How vector labels become class ids (rasterize_labels' keyword arguments); also stored in
    checkpoints, so that a new scene's labels are read the way the training labels were."""
    return {
        "class_column": str(data.class_column),
        "class_values": data.class_values,
        "class_groups": data.class_groups or None,
        "others": str(data.other_classes),
        "all_touched": bool(data.all_touched),
    }


def chip_plan(opts: RunConfig, classes: ClassTable) -> ChipPlan:
    """The chip plan of the ``data`` group, with defaults resolved."""
    data = opts.data
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
        points_path=data.chip_points, ignore_ring=float(data.boundary_ignore_px or 0),
    )


def predict_options(opts: RunConfig) -> dict[str, Any]:
    """The ``predict`` keys that :func:`deepgeo_runner.ml.predict.predict_scene` takes as is."""
    pred = opts.predict
    return {"blend": pred.blend, "probabilities": pred.probabilities, "entropy": bool(pred.entropy),
            "tta": bool(pred.tta), "amp": bool(pred.amp), "cog": bool(pred.cog)}


def predict_window(opts: RunConfig, trained_chip_size: int | None = None) -> int:
    """The side of the prediction windows: ``predict.window``, else the chip size the checkpoint was
    trained on (a new scene), else ``data.chip_size`` (:func:`~deepgeo_runner.geo.stitch.prediction_window`)."""
    return prediction_window(opts.predict.window, trained_chip_size, int(opts.data.chip_size))


def predict_device(opts: RunConfig) -> str:
    """Without a Trainer: the current GPU, unless the trainer config asks for the CPU."""
    import torch  # heavy: only when a scene is predicted without a Trainer

    return "cuda" if torch.cuda.is_available() and opts.trainer.get("accelerator") != "cpu" else "cpu"


def device_resident(data: DataConfig) -> bool | str:
    """``data.device_resident`` (``auto``, true or false); the deprecated ``data.resident`` wins when set
    (validation warned about it)."""
    if data.resident is not None:
        return bool(data.resident)
    value = data.device_resident
    return value if isinstance(value, bool) else str(value).lower()


def stack_dates(data: DataConfig) -> list[str]:
    """The dates of the stack, in band order: the keys of a ``data.image`` mapping, else ``data.dates``."""
    if isinstance(data.image, dict):
        return [str(d) for d in data.image.keys()]
    return [str(d) for d in (data.dates or [])]


def scene_nodata(data: DataConfig) -> float | None:
    """One nodata value for a mosaic, crop or reprojection (GDAL's warper takes one per source)."""
    return one_nodata(data.nodata)


def model_inputs(opts: RunConfig, n_features: int) -> dict[str, int]:
    """in_channels (and dates, for a multi-temporal network) of the configured model.

    A multi-temporal network (its class has ``temporal = True``) takes the bands of one date
    and the number of dates; the prepared stack holds the dates date-major as bands.
    """
    from hydra.utils import get_object  # the model class named by _target_, not built

    try:
        target = get_object(opts.model["_target_"])
    except Exception:  # reported with its cause when the model is built
        target = None
    if not getattr(target, "temporal", False):
        return {"in_channels": n_features}
    dates = len(stack_dates(opts.data)) or 1
    if n_features % dates:
        raise ConfigError(
            f"model={opts.model['_target_']} is multi-temporal but the stack's {n_features} bands "
            f"are not {dates} dates (data.dates or the keys of data.image) of equal band count."
        )
    return {"in_channels": n_features // dates, "dates": dates}


COPY_PASTE_SPARSE = 1.0  # augmentation.copy_paste=auto with sparse labels


def augment_plan(opts: RunConfig, labels: Path | None = None, classes: ClassTable | None = None,
                 network: bool = True, valid: Any = None):
    """The ``augmentation`` group as the plan the datamodules apply on the device.

    ``augmentation.copy_paste=auto`` and ``augmentation.teacher=auto`` are decided from the training
    labels (``labels``, the label raster): on when they are sparse polygons whose edges face unlabelled
    ground (issue 20), off for wall-to-wall ones; the teacher only for a network (``network``: the model
    is trained by gradients, not a pixel model itself). ``valid``: the image's valid pixels (the data
    check's), on which the labels' coverage is counted.
    """
    from deepgeo_runner.lit.datamodule import AugmentPlan  # heavy: imports torch and Lightning

    aug = opts.augmentation
    paste, teacher = aug.copy_paste, aug.teacher
    if "auto" in (str(paste), str(teacher)):
        sparse = False
        if labels is not None and classes is not None:
            layout = raster_label_layout(labels, target_lut(classes.n_classes, classes.background_is_class),
                                         valid=valid)
            sparse = layout.sparse
            log.info("labels: %.1f %% of valid pixels labelled, %.1f %% of label edges are class borders: %s labels",
                     100 * layout.labelled_share, 100 * layout.contact, "sparse" if sparse else "wall-to-wall")
        if str(paste) == "auto":
            paste = COPY_PASTE_SPARSE if sparse else 0.0
            log.info("augmentation.copy_paste=auto: %s", paste)
        if str(teacher) == "auto":
            teacher = sparse and network
            log.info("augmentation.teacher=auto: %s", "on" if teacher else "off")
    confidence = float(aug.teacher_confidence) if teacher is True else 0.0
    return AugmentPlan(aug.name, tuple(aug.expand_ops), float(aug.brightness), float(aug.noise_std),
                       copy_paste=float(paste), copy_paste_edge=float(aug.copy_paste_edge), teacher=confidence,
                       teacher_weight=float(getattr(aug, "teacher_weight", 1.0)))


def map_assessment(opts: RunConfig) -> str | None:
    """How this run measures its map (``assess.reference=…`` or ``assess.sample=…``), or None when
    the assess stage does not run: what the data check's warning on sparse labels says."""
    if "assess" not in run_stages(opts.stages, opts.assess, opts.data, opts.export):
        return None
    if opts.assess.sample is not None:
        return f"assess.sample={opts.assess.sample}"
    reference = assess_reference(opts.assess, opts.data)
    return f"assess.reference={reference}" if reference is not None else None


def split_buffer(data: DataConfig) -> int:
    """Pixels kept between training chips and val/test: ``data.split_buffer``, default a quarter
    chip (measured on the shared scenes: a whole chip left 16-25 % of the labelled pixels to
    training chips, a quarter chip 44-53 %)."""
    return int(data.split_buffer if data.split_buffer is not None else int(data.chip_size) // 4)


def fold_of(data: DataConfig) -> tuple[int | None, int]:
    """(K, i) of a k-fold run (``data.folds``, ``data.fold`` default 0), or (None, 0) for the single split."""
    if data.folds is None:
        return None, 0
    return int(data.folds), int(data.fold or 0)


def split_method(data: DataConfig) -> str:
    """How the split map was made, for the data check's table and report."""
    method = "polygons" if data.split_vector is not None else "class-stratified blocks"
    folds, fold = fold_of(data)
    return method if folds is None else f"{method}, fold {fold} of {folds} (folds 0..{folds - 1})"


def block_size(data: DataConfig) -> int:
    """The side of the split's blocks: ``data.block_size``, default two chips."""
    return int(data.block_size or 2 * data.chip_size)


def own_model_target(opts: RunConfig) -> str | None:
    """The ``model._target_`` of the user's own config: the one class outside deepgeo's models that a
    checkpoint may name (the checkpoint alone never decides what code runs)."""
    model = opts.model if isinstance(opts.model, dict) else {}
    target = model.get("_target_")
    return str(target) if target else None


def export_options(run: RunState) -> dict[str, Any]:
    """Stage ``export`` (:func:`deepgeo_runner.stages.export_run.export_run_model`): the checkpoint this run
    fitted, else ``predict.checkpoint``; ``export.formats`` and ``export.tile`` into ``<run>/export``."""
    opts = run.opts
    checkpoint = run.art.checkpoint or (checkpoint_file(opts.predict.checkpoint) if opts.predict.checkpoint else None)
    return {"checkpoint": checkpoint, "out_dir": Path(run.run_dir) / "export", "formats": list(opts.export.formats),
            "tile": opts.export.tile, "trusted_target": own_model_target(opts)}
