"""predict from the run's options: the run's own scene, or a new scene prepared like the
checkpoint's training scene (``predict.image``), and its scores against ``predict.labels``.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

from deepgeo_runner.config.schema import RunConfig
from deepgeo_runner.core.atomic import write_text_atomic
from deepgeo_runner.core.checkpoint_path import checkpoint_file
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.geo.polygonize import polygonize_classes
from deepgeo_runner.geo.scene_sources import check_scenes_fit, predict_scenes
from deepgeo_runner.ml.metrics import strict_json
from deepgeo_runner.pipeline.artifacts import Artifacts
from deepgeo_runner.pipeline.scenes import finished, forget_record, scene_identity, write_record
from deepgeo_runner.pipeline.stage_options import (
    label_options,
    own_model_target,
    predict_device,
    predict_options,
    predict_window,
)
from deepgeo_runner.stages.labels import rasterize_labels

log = logging.getLogger(__name__)


def predict_stage(
    opts, run_dir: Path, art: Artifacts, classes: ClassTable, module, checkpoint: Path | None,
    device: str, rank: int = 0, world_size: int = 1,
) -> None:
    """Classify the whole prepared scene (or ``predict.image``) with the best weights.

    By default rank 0 alone does it. Called on every rank with ``rank``/``world_size``, the
    window rows are shared out and rank 0 assembles the one output (part files, no collective).
    """
    # heavy: torch and Lightning, loaded only when a stage trains
    from deepgeo_runner.stages import train

    # heavy: torch, loaded only when a stage trains or predicts
    from deepgeo_runner.stages.apply import classify_prepared

    meta = train.load_weights(module, checkpoint) if checkpoint is not None else {}
    if hasattr(module.net, "output_crop") and hasattr(module.net, "mirror_pad"):
        module.net.mirror_pad = True  # valid padding: overlap-tile, logits as large as the window
    if opts.predict.image:  # prepared like the checkpoint's training scene; rank 0 alone
        if rank != 0:
            return
        art.prediction = predict_new_scene(opts, run_dir, module.net, meta or module.inference_meta, device,
                                           checkpoint)
        return
    table = {"class_ids": classes.ids, "class_names": classes.names, "class_colors": classes.colors}
    art.prediction = classify_prepared(
        module.net, art.prepared, run_dir / "prediction.tif", table,
        window=predict_window(opts), overlap=window_overlap(opts, module.net),
        batch_size=int(opts.predict.batch_size), device=device, rank=rank, world_size=world_size,
        prior_shift=prior_shift_request(opts, art, classes, (meta or module.inference_meta).get("class_pixels")),
        **predict_options(opts),
    )
    if rank == 0:
        art.scene_priors = read_scene_priors(art.prediction)
        art.sieve = sieve_stage(opts, art.prediction)
        polygons_stage(opts, art.prediction)


def prior_shift_request(opts: RunConfig, art: Artifacts, classes: ClassTable, seen: Any = None):
    """``predict.prior_shift``: the training pixels of each output when the map is to be decided with the
    scene's class shares, else None (``auto``: :func:`prior_shift_auto`). ``seen``: the pixels per output the
    model was fitted on, as its card records them (the chips' histograms; a pixel model's own sample);
    default the training chips' counts, else the data check's."""
    from deepgeo_runner.stages.scene_priors import PriorShift  # heavy: imports torch

    mode = opts.predict.prior_shift
    if mode is False or (str(mode) == "auto" and not prior_shift_auto(opts, art)):
        return None
    if not art.train_class_pixels:
        log.warning("predict.prior_shift=%s: no training pixel counts (the data check did not run): the map is "
                    "decided with the network's own priors", mode)
        return None
    chips_seen, distinct = training_class_pixels(art, classes)
    seen = tuple(float(c) for c in seen) if seen is not None and len(seen) == len(distinct) else chips_seen
    held_out = Path(art.chips.path) if art.chips is not None else None  # its validation chips check the posteriors
    coverage = art.label_coverage or {}
    floor = tuple(float(coverage.get(name, 0.0)) for name in classes.names) if coverage else None
    return PriorShift(seen, distinct, held_out=held_out, floor=floor)


def card_prior_shift(opts: RunConfig, meta: dict):
    """``predict.prior_shift=true`` on a new scene: the training class pixels the checkpoint's card records, else
    None. ``auto`` leaves a new scene's map as the network draws it: EM reads class shares from posteriors only
    where the classes look as they did in training (the same scene), and a new scene has no validation
    pixels to check that on."""
    from deepgeo_runner.ml.model_card import ModelCard
    from deepgeo_runner.stages.scene_priors import PriorShift  # heavy: imports torch

    if opts.predict.prior_shift is not True:
        return None
    card = ModelCard.from_dict(meta)
    if not card.class_pixels or len(card.class_pixels) != len(card.classes):
        log.warning("predict.prior_shift=true: the checkpoint records no training class pixels (written before "
                    "they were kept): the map is decided with the network's own priors")
        return None
    distinct = card.distinct_class_pixels if card.distinct_class_pixels else card.class_pixels
    return PriorShift(tuple(card.class_pixels), tuple(distinct))


def prior_shift_auto(opts: RunConfig, art: Artifacts) -> bool:
    """What ``predict.prior_shift=auto`` decides for this run's network: on for sparse training labels (the data
    check's verdict) without teacher labels (which already carry the forest's guess of the scene's shares)."""
    return bool(art.labels_sparse) and opts.augmentation.teacher is False


def training_class_pixels(art: Artifacts, classes: ClassTable) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Labelled training pixels per output: as the network saw them (the training chips' histograms, overlaps
    counted; the distinct ones without a chip store) and distinct (the data check's). Needs the data check."""
    distinct = tuple(float(art.train_class_pixels.get(name, 0)) for name in classes.names)
    if art.chips is None:
        return distinct, distinct
    from deepgeo_runner.stages.chips import split_class_counts

    counts = split_class_counts(art.chips.path, len(distinct)).get("train")
    seen = distinct if counts is None or not counts.sum() else tuple(float(c) for c in counts)
    return seen, distinct


def read_scene_priors(prediction: Path | None) -> dict | None:
    """The estimate written beside ``prediction`` by the prior shift, for provenance; None without one."""
    from deepgeo_runner.stages.scene_priors import priors_path  # heavy: imports torch

    path = priors_path(prediction) if prediction is not None else None
    return json.loads(path.read_text()) if path is not None and path.is_file() else None


def window_overlap(opts: RunConfig, net) -> float:
    """``predict.overlap``, or 0 for a pixel model (``pixelwise``: a pixel's class depends on that pixel
    alone, so overlapping windows would only repeat the same answers)."""
    return 0.0 if getattr(net, "pixelwise", False) else float(opts.predict.overlap)


def sieve_stage(opts: RunConfig, prediction: Path | None) -> dict | None:
    """``predict.mmu_ha``: ``prediction.tif`` rewritten with no patch under the minimum mapping unit (before the
    polygons and the assessment read it); returns the record that provenance keeps (``sieve``), or None."""
    mmu = float(opts.predict.mmu_ha or 0)
    if not mmu or prediction is None or not Path(prediction).exists():
        return None
    # heavy: rasterio, loaded only when a map is sieved
    from deepgeo_runner.stages.mmu import sieve_map

    record = sieve_map(prediction, mmu, cog=bool(opts.predict.cog))
    write_text_atomic(Path(prediction).with_name("prediction_sieve.json"), strict_json(record))
    return record


def polygons_stage(opts: RunConfig, prediction: Path) -> None:
    """``predict.polygons``: the chosen classes as polygons with areas, and per-class totals."""
    if not opts.predict.polygons:
        return

    polygonize_classes(prediction, prediction.with_name("prediction_polygons.gpkg"),
                       list(opts.predict.polygons), float(opts.predict.min_area_ha))


def predict_new_scene(opts: RunConfig, run_dir: Path, net, meta: dict, device: str | None = None,
                      checkpoint: Path | None = None) -> Path | None:
    """``predict.image``: each scene prepared with the checkpoint's bands, indices and statistics
    and classified into its own outputs (:mod:`deepgeo_runner.geo.scene_sources`: ``run_dir`` for one scene,
    ``run_dir/scenes/<name>/`` for several). Every scene is checked against the checkpoint before
    the first is predicted; a scene finished by an earlier launch is skipped. Returns the
    prediction of a single scene (None for several)."""
    scenes = predict_scenes(opts.predict.image, run_dir)
    check_scenes_fit(scenes, meta)
    options = {**predict_options(opts), "window": opts.predict.window, "overlap": opts.predict.overlap,
               "polygons": opts.predict.polygons, "min_area_ha": opts.predict.min_area_ha,
               "labels": opts.predict.labels, "nodata": opts.data.nodata}
    for i, scene in enumerate(scenes, 1):
        identity = scene_identity(scene, checkpoint, options)
        if finished(scene, identity):
            log.info("skipping %s: done (%s)", scene.name, scene.out_dir)
            continue
        if len(scenes) > 1:
            log.info("predict.image scene %d/%d: %s → %s", i, len(scenes), scene.name, scene.out_dir)
        forget_record(scene)  # an interrupted redo must not leave the old record vouching for new outputs
        outputs = _predict_one_scene(opts, scene.source, scene.out_dir, net, meta, device)
        if len(scenes) > 1:  # a prepared stack per scene would fill the disk on hundreds of scenes
            shutil.rmtree(scene.out_dir / "predict_input", ignore_errors=True)
        write_record(scene, identity, outputs)
    return scenes[0].out_dir / "prediction.tif" if len(scenes) == 1 else None


def _predict_one_scene(opts: RunConfig, image: Any, out_dir: Path, net, meta: dict, device: str | None) -> list[Path]:
    """One scene into ``out_dir``: streamed from its raw bands (or, with ``predict.stream=false``, prepared into
    ``predict_input/`` first), classified, vectorized and scored as asked; returns the outputs written."""
    # heavy: torch, loaded only when a stage trains or predicts
    from deepgeo_runner.ml.predict import output_paths
    from deepgeo_runner.stages.apply import classify_like_checkpoint

    out_dir.mkdir(parents=True, exist_ok=True)
    prepared, prediction = classify_like_checkpoint(
        net, meta, image, out_dir / "predict_input", out_dir / "prediction.tif",
        window=predict_window(opts, meta.get("chip_size")),
        overlap=window_overlap(opts, net), batch_size=int(opts.predict.batch_size),
        device=device or predict_device(opts), nodata=opts.data.nodata, stream=bool(opts.predict.stream),
        prior_shift=card_prior_shift(opts, meta), **predict_options(opts),
    )
    sieved = sieve_stage(opts, prediction)
    polygons_stage(opts, prediction)
    outs = output_paths(prediction, str(opts.predict.probabilities), bool(opts.predict.entropy))
    written = [p for p in (outs.classes, outs.probabilities, outs.entropy) if p is not None]
    extras = ("prediction_polygons.gpkg", "prediction_totals.json") if opts.predict.polygons else ()
    extras += ("prediction_sieve.json",) if sieved else ()
    written += [prediction.with_name(name) for name in extras if prediction.with_name(name).exists()]
    if opts.predict.labels:
        score_new_scene(opts, out_dir, prepared.path, prediction, meta, image)
        written.append(out_dir / "prediction_metrics.json")
    return written


def score_new_scene(opts: RunConfig, run_dir: Path, prepared: Path, prediction: Path, meta: dict,
                    image: Any = None) -> None:
    """``predict.labels``: rasterize the new scene's labels with the checkpoint's classes, read
    the way its training labels were (class column, values, groups: recorded in the checkpoint),
    and score every labelled pixel of the class map into ``prediction_metrics.json``."""
    # heavy: rasterio, loaded only when a new scene is scored
    from deepgeo_runner.stages.evaluate import score_scene

    names, ids = list(meta["class_names"]), list(meta["class_ids"])
    of_interest = [n for n, i in zip(names, ids, strict=True) if i > 0]
    colors = [c for c, i in zip(meta["class_colors"], ids, strict=True) if i > 0]
    labelling = meta.get("labelling") or label_options(opts.data)  # older checkpoints: this run's data group
    reference = rasterize_labels(opts.predict.labels, prepared, run_dir / "predict_input" / "labels.tif",
                                 of_interest, colors, **labelling)
    scores = score_scene(reference, prediction, ids, names)
    image = opts.predict.image if image is None else image
    scores.update(split="scene", image=image if isinstance(image, str | dict | list) else str(image),
                  labels=str(opts.predict.labels))
    write_text_atomic(run_dir / "prediction_metrics.json", strict_json(scores))
    log.info("scene %s: accuracy %.4f, F1 macro %.4f over %d labelled pixels", opts.predict.labels,
             scores["accuracy"], scores["f1_macro"], scores["pixels"])


def apply_checkpoint_stage(opts: RunConfig, run_dir: str | Path, art: Artifacts | None = None) -> Artifacts:
    """``deepgeo stages=[predict] predict.checkpoint=CKPT predict.image=NEW.tif``: the whole stage
    from the checkpoint alone (no data preparation of the training scene, no model config);
    ``run`` takes this path instead of the data stages when ``predict`` is the only stage.
    """
    # heavy: torch (and onnxruntime for a model.onnx), loaded only when a stage trains or predicts
    from deepgeo_runner.export.apply_exported import is_exported, load_exported
    from deepgeo_runner.stages.apply import build_net, read_checkpoint

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    art = art or Artifacts()
    art.checkpoint = checkpoint_file(opts.predict.checkpoint)
    if is_exported(art.checkpoint):  # model.onnx / model.pt2 from deepgeo-export: raw bands in
        net, meta = load_exported(art.checkpoint)
    else:
        weights, meta = read_checkpoint(art.checkpoint)
        net = build_net(meta, weights, own_model_target(opts), f"predict.checkpoint '{art.checkpoint}'")
    start = time.perf_counter()
    scenes = predict_scenes(opts.predict.image, run_dir)
    if len(scenes) == 1:  # several scenes: each one's record lists its files and their SHA-256
        art.image_sources = scenes[0].groups
        art.image = scenes[0].tiles[0] if len(scenes[0].tiles) == 1 else None
    art.prediction = predict_new_scene(opts, run_dir, net, meta, checkpoint=art.checkpoint)
    art.timings["predict"] = round(time.perf_counter() - start, 2)
    return art
