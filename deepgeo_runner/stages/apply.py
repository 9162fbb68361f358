"""Apply a trained checkpoint to a new scene: everything comes from the checkpoint.

A checkpoint written by :class:`deepgeo_runner.lit.module.SegmentationModule` carries, under
``deepgeo``, the band names, indices and normalization statistics the network was trained
with, its class table and its model config. The new scene is prepared with exactly those
(statistics reused, never refitted) and the network rebuilt from that config, so applying a
run to another scene needs no data or model options. The preparation runs on the rows as they are
read (:mod:`deepgeo_runner.stages.raw_scene`), unless ``stream=False`` asks for the prepared stack.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.export.apply_exported import classify_exported, is_exported, load_exported
from deepgeo_runner.geo.polygonize import polygonize_classes
from deepgeo_runner.geo.stitch import prediction_window
from deepgeo_runner.ml.checkpoint import load_checkpoint
from deepgeo_runner.ml.model_card import ModelCard, checkpoint_meta
from deepgeo_runner.ml.models.registry import build_from_description
from deepgeo_runner.ml.predict import ClassLegend, RankShare, output_paths, predict_settings
from deepgeo_runner.stages.prepare import prepare_scene
from deepgeo_runner.stages.raw_scene import (
    RawRun,
    classify_raw_bands,
    pixel_preparation,
    prepare_options,
    scene_raster,
    streams_raw_bands,
    warn_on_drift,
)
from deepgeo_runner.stages.scene_priors import PriorShift, predict_for_scene_priors

log = logging.getLogger(__name__)

_META_KEYS = ("features", "band_names", "indices", "stats", "class_names", "class_ids", "class_colors",
              "model")
_PRETRAINED_KEYS = ("encoder_weights", "torchgeo_weights")  # smp_model keys that fetch weights


@dataclass
class Applied:
    """What applying a checkpoint wrote."""

    prepared: Path  # the prepared stack, or the raster whose raw bands were streamed
    prediction: Path
    extra: dict[str, Path] = field(default_factory=dict)


def read_checkpoint(checkpoint: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The network's weights (``net.`` prefix removed) and the inference metadata."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise InputDataError(f"checkpoint not found: '{checkpoint}'. Set predict.checkpoint to a .ckpt file.")
    state = load_checkpoint(checkpoint, key="checkpoint")  # weights_only: a crafted file runs nothing
    meta = checkpoint_meta(state.get("deepgeo"), f"checkpoint '{checkpoint}'")  # read through the model card
    missing = [k for k in _META_KEYS if not meta or k not in meta]
    if missing and meta and meta.get("datamodule"):
        raise InputDataError(
            f"checkpoint '{checkpoint}' comes from a data=torchgeo run ({meta['datamodule']}), which records no "
            "band names or normalization statistics: it cannot be applied to a scene. Train with data=scene "
            "to classify whole scenes."
        )
    if missing:
        raise InputDataError(
            f"checkpoint '{checkpoint}' lacks the inference metadata {missing} (it was not written by "
            "deepgeo's SegmentationModule); train with deepgeo, or predict within the run that made it."
        )
    if not isinstance(state.get("state_dict"), dict):
        raise InputDataError(f"checkpoint '{checkpoint}' holds no 'state_dict' of weights: give a .ckpt "
                             "written by deepgeo.")
    weights = {k[len("net."):]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    return weights, meta


def build_net(meta: dict[str, Any], weights: dict[str, torch.Tensor] | None = None,
              trusted_target: str | None = None, source: str = "checkpoint") -> torch.nn.Module:
    """The network described by the checkpoint's model config, with ``weights`` loaded.

    The description is data: its name is looked up among deepgeo's models, or must equal
    ``trusted_target`` (the user's own config's ``model._target_``); nothing a file names is
    instantiated (:mod:`deepgeo_runner.ml.models.registry`).
    """
    inputs = meta.get("model_inputs") or {"in_channels": len(meta["features"])}  # older checkpoints
    model = meta["model"]
    net = None
    try:
        net = build_from_description(model, inputs, len(meta["class_names"]), source, trusted_target,
                                     drop=_PRETRAINED_KEYS)  # the checkpoint's weights replace pretrained ones
    except InputDataError:
        raise
    except Exception as exc:
        target = model.get("_target_") if isinstance(model, dict) else None
        raise ConfigError(f"cannot rebuild the model '{target}' of {source}: {type(exc).__name__}: {exc}") from exc
    if weights is not None:
        net.load_state_dict(weights)
    return net


def prepare_like_checkpoint(image: Any, out_dir: str | Path, meta: dict[str, Any],
                            nodata: float | None = None, progress: bool = True):
    """Prepare ``image`` with the checkpoint's bands, indices and statistics (not refitted).

    ``image`` is a raster, a list of tiles to mosaic, or a mapping date → raster(s) stacked like
    the training dates (same number of dates; the dates themselves may differ, e.g. a later year).
    """
    card = ModelCard.from_dict(meta)
    image, n_groups = scene_raster(image, card, out_dir, nodata, progress)  # a mosaic or a time stack: one raster
    warn_on_drift(card, image, nodata, n_groups if n_groups > 1 else 1)
    options, stats = prepare_options(meta, nodata, progress)
    prepared = prepare_scene(image, out_dir, options, stats=stats)
    if list(prepared.feature_names) != list(meta["features"]):  # named by the training dates
        raise InputDataError(
            f"'{image}' prepared to features {list(prepared.feature_names)}, but the checkpoint was "
            f"trained on {list(meta['features'])}: give a scene with the same bands."
        )
    return prepared


def classify_prepared(
    net: torch.nn.Module, prepared: Any, out_path: str | Path, classes: dict[str, Any], *, window: int,
    overlap: float, batch_size: int, device: str, progress: bool = True, rank: int = 0, world_size: int = 1,
    prior_shift: PriorShift | None = None, **predict_options: Any,
) -> Path:
    """The one call of :func:`~deepgeo_runner.ml.predict.predict_scene` for a prepared scene (a
    run's own, or a new one prepared like the checkpoint's): ``classes`` holds ``class_ids``,
    ``class_names`` and ``class_colors`` (a checkpoint's metadata has them); per-chip
    standardization follows the scene's statistics. ``rank``/``world_size`` share the rows out;
    ``prior_shift``: the map decided with the scene's class priors (:mod:`.scene_priors`)."""
    windows, outputs = predict_settings(window, overlap, batch_size, standardize=prepared.stats.per_chip,
                                        **predict_options)
    return predict_for_scene_priors(net, prepared.path, out_path, windows, ClassLegend.of(classes), device, progress,
                                    prior_shift, outputs=outputs, share=RankShare(rank, world_size))


def classify_like_checkpoint(
    net: torch.nn.Module, meta: dict[str, Any], image: Any, prepared_dir: str | Path, out_path: str | Path, *,
    window: int, overlap: float, batch_size: int, device: str, nodata: Any = None, progress: bool = True,
    stream: bool = True, prior_shift: PriorShift | None = None, **predict_options: Any,
):
    """The one path that classifies a new scene with the checkpoint's preparation and class table.

    By default (``stream``) the scene's raw bands are prepared on the network's device as they are read
    (:mod:`deepgeo_runner.stages.raw_scene`: no prepared stack is written; the same class map); with
    ``stream=False``, or for a card that cannot prepare raw bands, the scene is first prepared into
    ``prepared_dir/prepared.tif``. A mosaic or a time stack becomes ``prepared_dir/scene.tif`` either way.
    Used by :func:`apply_checkpoint` (a checkpoint file) and by a run's ``predict.image``.
    Returns the scene read (prepared, or raw with its ``path``) and the prediction's path.
    """
    if getattr(net, "takes_raw_bands", False):  # an exported model (.onnx/.pt2) prepares its input itself
        if prior_shift is not None:
            log.info("predict.prior_shift: not applied to an exported model (its graph ends in the softmax); "
                     "apply the checkpoint for a map decided with the scene's class priors")
        return classify_exported(net, meta, image, prepared_dir, out_path, window=window, overlap=overlap,
                                 batch_size=batch_size, device=device, nodata=nodata, progress=progress,
                                 **predict_options)
    card = ModelCard.from_dict(meta)
    if stream and streams_raw_bands(card):
        how = RawRun(device, pixel_preparation(card, device))
        return classify_raw_bands(net, card, image, prepared_dir, out_path, how, window=window, overlap=overlap,
                                  batch_size=batch_size, nodata=nodata, progress=progress, prior_shift=prior_shift,
                                  **predict_options)
    prepared = prepare_like_checkpoint(image, prepared_dir, meta, nodata, progress)
    prediction = classify_prepared(net, prepared, out_path, meta, window=window, overlap=overlap,
                                   batch_size=batch_size, device=device, progress=progress, prior_shift=prior_shift,
                                   **predict_options)
    return prepared, prediction


def apply_checkpoint(
    checkpoint: str | Path,
    image: Any,
    out_dir: str | Path,
    *,
    window: int | None = None,
    overlap: float = 0.5,
    batch_size: int = 16,
    device: str | None = None,
    nodata: float | None = None,
    polygons: list[str] | None = None,
    min_area_ha: float = 0.0,
    progress: bool = True,
    trusted_target: str | None = None,
    stream: bool = True,
    **predict_options: Any,
) -> Applied:
    """Classify ``image``, prepared like the checkpoint's training scene, into ``out_dir``.

    Writes ``out_dir/prediction.tif`` (plus the optional outputs of
    :func:`deepgeo_runner.ml.predict.predict_scene`, to which ``predict_options`` go, and
    ``prediction_polygons.gpkg`` when ``polygons`` names classes). The raw bands are prepared as they
    are read (``stream``, see :func:`classify_like_checkpoint`); ``stream=False`` first writes
    ``out_dir/prepared/prepared.tif``. ``Applied.prepared`` is the raster the network's input came from.
    A checkpoint of the user's own network class loads only when ``trusted_target`` names that class
    (see :func:`build_net`).
    """
    out_dir = Path(out_dir)
    if is_exported(checkpoint):  # model.onnx / model.pt2 of deepgeo-export: raw bands in, on the CPU
        net, meta = load_exported(checkpoint)
    else:
        weights, meta = read_checkpoint(checkpoint)
        net = build_net(meta, weights, trusted_target, f"checkpoint '{checkpoint}'")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    prepared, pred = classify_like_checkpoint(
        net, meta, image, out_dir / "prepared", out_dir / "prediction.tif",
        window=prediction_window(window, meta.get("chip_size")), overlap=overlap, batch_size=batch_size,
        device=device, nodata=nodata, progress=progress, stream=stream, **predict_options)
    outs = output_paths(pred, predict_options.get("probabilities", "none"),
                        bool(predict_options.get("entropy", False)))
    extra = {k: v for k, v in (("probabilities", outs.probabilities), ("entropy", outs.entropy)) if v}
    if polygons:
        gpkg, totals = polygonize_classes(pred, out_dir / "prediction_polygons.gpkg", polygons, min_area_ha)
        extra.update(polygons=gpkg, totals=totals)
    return Applied(prepared.path, pred, extra)
