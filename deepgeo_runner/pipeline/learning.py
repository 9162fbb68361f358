"""fit and test from the run's options: the network, loss and optimizer built from their
``_target_`` nodes, the Trainer with its callbacks, resume, and signals.

torch and Lightning are imported inside the functions, so that a config error never waits
for them. Where a change goes: how a Trainer or LightningModule is assembled for a run.
"""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from deepgeo_runner.config.schema import RunConfig
from deepgeo_runner.config.validate import check_precision
from deepgeo_runner.core.atomic import write_text_atomic
from deepgeo_runner.core.checkpoint_path import checkpoint_file
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.core.console import interactive, tidy_third_party_logging
from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.core.signals import SignalStop
from deepgeo_runner.ml.metrics import strict_json
from deepgeo_runner.pipeline.artifacts import Artifacts
from deepgeo_runner.pipeline.instantiators import instantiate, instantiate_callbacks, instantiate_loggers
from deepgeo_runner.pipeline.predicting import predict_stage, training_class_pixels
from deepgeo_runner.pipeline.provenance import code_version
from deepgeo_runner.pipeline.run_state import RunState
from deepgeo_runner.pipeline.stage_options import (
    augment_plan,
    block_size,
    device_resident,
    label_options,
    model_inputs,
    predict_device,
)
from deepgeo_runner.stages.chips import split_class_counts
from deepgeo_runner.stages.intervals import add_block_intervals

log = logging.getLogger(__name__)


def build_module(opts: RunConfig, classes: ClassTable, in_channels: int, meta: dict, chips_dir: Path | None = None):
    """The LightningModule around the configured network (torch imported only now).

    ``meta`` is what prediction needs later (stored in every checkpoint); ``chips_dir`` gives
    the training labels' pixel counts to a loss whose class weights are computed from them.
    """
    import lightning.pytorch as pl

    # heavy: torch and Lightning, loaded only when a stage trains
    from deepgeo_runner.lit.module import SegmentationModule

    # heavy: torch, loaded only when a stage trains or predicts
    from deepgeo_runner.ml.losses import needs_class_counts, set_class_counts

    pl.seed_everything(int(opts.seed), workers=True, verbose=False)
    inputs = model_inputs(opts, in_channels)
    net = instantiate(opts.model, "model", **inputs, classes=len(classes.names))
    optimizer = instantiate(opts.optimizer, "optimizer")
    scheduler = instantiate(opts.scheduler, "scheduler") if opts.scheduler else None
    loss = instantiate(opts.loss, "loss")
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
            "model": opts.model, "model_inputs": inputs, **meta}
    if opts.train.channels_last:
        import torch

        net = net.to(memory_format=torch.channels_last)
    return SegmentationModule(net, optimizer, scheduler, classes.names, loss=loss, inference_meta=meta,
                              compile_net=bool(opts.train.compile),
                              teacher_weight=float(opts.augmentation.teacher_weight))


def training_class_facts(art: Artifacts, classes: ClassTable) -> dict:
    """The training labels' class pixels (as the chips showed them, and distinct), for the model card: a new
    scene's map is corrected for its class priors from these with ``predict.prior_shift=true``
    (:func:`deepgeo_runner.pipeline.predicting.prior_shift_request`)."""
    if not art.train_class_pixels:
        return {}
    seen, distinct = training_class_pixels(art, classes)
    return {"class_pixels": list(seen), "distinct_class_pixels": list(distinct)}


def learn_stage(opts: RunConfig, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str],
                rank: int, stop=None) -> None:
    """fit / test / predict: the stages that need torch (see :func:`learn_stages`). ``stop``: the run's
    :class:`~deepgeo_runner.core.signals.SignalStop` (the runner records the status of a run that does not complete)."""
    learn_stages(opts, run_dir, art, classes, stages, rank, stop=stop)


def learn_stages(opts: RunConfig, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str], rank: int,
                  stop=None) -> None:
    """fit / test / predict.

    After a multi-process fit/test every rank predicts its share of the scene's window rows on
    its own device, and rank 0 assembles the one output; otherwise rank 0 predicts alone.
    """
    prepared = art.prepared
    meta = {
        "features": list(prepared.feature_names), "band_names": art.band_names,
        "indices": list(opts.preprocessing.indices), "stats": prepared.stats.to_dict(),
        "chip_size": int(opts.data.chip_size), "dates": list(prepared.dates), "labelling": label_options(opts.data),
        "input_profile": art.input_profile, "nodata_rule": str(opts.data.nodata_rule), **art.prepare_extras,
        **training_scene_facts(opts, art),  # the model card's sensor, scene footprint, nodata, code version
        **training_class_facts(art, classes),  # the card's training class pixels: predict.prior_shift on new scenes
    }
    module = build_module(opts, classes, prepared.n_features, meta, art.chips.path if art.chips else None)
    checkpoint = checkpoint_file(opts.predict.checkpoint) if opts.predict.checkpoint else None
    trainer = None
    if {"fit", "test"} & set(stages):
        # heavy: torch and Lightning, loaded only when a stage trains
        from deepgeo_runner.lit.datamodule import ChipDataModule

        pixel_model = getattr(module.net, "fits_without_gradients", False)
        plan = augment_plan(opts, getattr(art, 'labels', None), classes, network=not pixel_model,
                            valid=getattr(art, 'valid_mask', None))
        train_masks = teacher_train_masks(opts, art, classes, plan.teacher) if "fit" in stages else None
        datamodule = ChipDataModule(art.chips.path, int(opts.data.batch_size), int(opts.data.num_workers),
                                    plan, int(opts.seed), resident=device_resident(opts.data),
                                    test_split=str(opts.test_split), train_masks=train_masks)
        if "fit" in stages and pixel_model:
            # its sample's class shares, not the chips', are its priors (an equal share per class when capped)
            module.inference_meta["class_pixels"] = fit_pixel_model(opts, art, module.net)
        checkpoint, trainer = fit_test(opts, run_dir, art, module, datamodule, stages, checkpoint, stop=stop)
        rank = trainer.global_rank
    art.checkpoint = checkpoint
    if "predict" not in stages:
        return
    device = str(trainer.strategy.root_device) if trainer is not None else predict_device(opts)
    world_size = trainer.world_size if trainer is not None else 1
    # part files meet in the run directory, which only the processes of one machine surely share
    if world_size > 1 and trainer.num_nodes == 1 and not opts.predict.image:
        checkpoint = trainer.strategy.broadcast(checkpoint, src=0)  # every rank loads the same weights
        if rank == 0:  # part files of an interrupted earlier attempt must not be taken for this one's
            for stale in run_dir.glob(".prediction.tif.parts-*"):
                shutil.rmtree(stale, ignore_errors=True)
        trainer.strategy.barrier("deepgeo-predict")
        predict_stage(opts, run_dir, art, classes, module, checkpoint, device, rank=rank, world_size=world_size)
    elif rank == 0:
        predict_stage(opts, run_dir, art, classes, module, checkpoint, device)


def training_scene_facts(opts: RunConfig, art: Artifacts) -> dict[str, Any]:
    """What the model card records of the training scene beyond its bands and statistics: the sensor,
    the footprint of the scene as prepared (CRS, bounds, pixel size, the raw image's dtype), the nodata
    the run set and the code version."""
    # heavy: rasterio, loaded only when a stage trains or predicts
    from deepgeo_runner.geo.footprint import image_nodata, raster_footprint

    scene = raster_footprint(art.prepared.path)
    scene["image_nodata"] = image_nodata(art.image)  # an exported graph marks these raw values nodata
    if art.input_profile:
        scene["dtype"] = art.input_profile.get("dtype")
    facts = {"sensor": opts.data.sensor, "scene": scene, "code_version": code_version()}
    nodata = opts.data.nodata
    if nodata is not None:
        facts["nodata"] = nodata if isinstance(nodata, int | float) else list(nodata)
    return facts


def learn_datamodule_stage(opts: RunConfig, run_dir: Path, art: Artifacts, classes: ClassTable,
                           stages: list[str], stop=None) -> None:
    """fit / test on a datamodule's chips (:func:`learn_datamodule_stages`), stopped like :func:`learn_stage`."""
    learn_datamodule_stages(opts, run_dir, art, classes, stages, stop=stop)


def learn_datamodule_stages(opts: RunConfig, run_dir: Path, art: Artifacts, classes: ClassTable, stages: list[str],
                             stop=None) -> None:
    """fit / test on the chips of a datamodule given by ``data.datamodule["_target_"]`` (data=torchgeo).

    The datamodule is used as it is (its download, splits, normalization and augmentation);
    :class:`~deepgeo_runner.lit.torchgeo.TorchGeoAdapter` turns its batches into ours.
    """
    # heavy: torch and Lightning, loaded only when a stage trains
    from deepgeo_runner.lit.torchgeo import TorchGeoAdapter

    data = opts.data
    meta = {"datamodule": data.datamodule["_target_"], "in_channels": int(data.in_channels),
            "band_names": list(data.band_names), "ignore_index": data.ignore_index}
    module = build_module(opts, classes, int(data.in_channels), meta)
    inner = instantiate(data.datamodule, "data.datamodule")
    datamodule = TorchGeoAdapter(inner, len(classes.names), int(data.in_channels), data.ignore_index,
                                 augment_plan(opts), int(opts.seed))
    checkpoint = checkpoint_file(opts.predict.checkpoint) if opts.predict.checkpoint else None
    art.checkpoint, _ = fit_test(opts, run_dir, art, module, datamodule, stages, checkpoint,
                                  shard_here=False, stop=stop)


def fit_test(opts: RunConfig, run_dir: Path, art: Artifacts, module, datamodule, stages: list[str],
             checkpoint: Path | None, shard_here: bool = True, stop=None):
    """Train and/or test with Lightning; return the best checkpoint and the Trainer.

    ``shard_here``: the datamodule shards by rank itself (our chip store); otherwise Lightning
    adds its distributed sampler (a datamodule by ``_target_``). ``stop``: the run's
    :class:`~deepgeo_runner.core.signals.SignalStop`, told the Trainer so that a signal stops it
    at a batch boundary.
    """
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    # heavy: torch and Lightning, loaded only when a stage trains
    from deepgeo_runner.lit.tracking import (
        continue_mlflow_run,
        flat_hyperparameters,
        log_hyperparameters,
        record_mlflow_run,
    )

    # heavy: torch and Lightning, loaded only when a stage trains
    from deepgeo_runner.stages import train

    stop = stop or SignalStop()
    trainer, loggers = _make_trainer(opts, run_dir, module, shard_here)
    stop.trainer = trainer
    try:
        resume = resume_checkpoint(opts, run_dir, module, loggers) if "fit" in stages else None
        if resume is not None:
            continue_mlflow_run(loggers, run_dir)  # one MLflow run over every attempt of this run
        log_hyperparameters(loggers, flat_hyperparameters(opts))  # after resume: the CSV logger keeps its rows
        if trainer.global_rank == 0:
            record_mlflow_run(loggers, run_dir)
        if "fit" in stages:
            checkpoint = train.fit(trainer, module, datamodule, resume)
            best = trainer.checkpoint_callback.best_model_score if trainer.checkpoint_callback else None
            art.best_score = float(best) if best is not None and bool(best.isfinite()) else None
        if stop.signum is not None:
            raise stop.interrupted()
        if "test" in stages:
            _test_and_record(opts, run_dir, art, module, datamodule, trainer, checkpoint, "fit" in stages)
        if stop.signum is not None:
            raise stop.interrupted()
    except SIGTERMException:  # Lightning's stop on SIGTERM (or our SIGINT, handed to it) exits 0 otherwise
        raise stop.interrupted() from None
    return checkpoint, trainer


def _make_trainer(opts: RunConfig, run_dir: Path, module, shard_here: bool):
    """The run's Trainer and loggers from the ``trainer``, ``callbacks`` and ``logger`` groups; a precision the
    machine cannot run fails here, before Lightning silently swaps it."""
    import torch  # heavy: loaded by now (the module is built)

    # heavy: torch and Lightning, loaded only when a stage trains
    from deepgeo_runner.lit.checkpoints import SafeCheckpointIO

    # accelerator=auto on a machine without a GPU: a float16 precision is refused before Lightning swaps it
    check_precision(opts.trainer.get("precision", "32-true"), opts.trainer.get("accelerator", "auto"),
                    gpu_available=torch.cuda.is_available())
    callbacks = instantiate_callbacks(opts.callbacks)  # conf/callbacks/: checkpoints, seeds, history
    loggers = instantiate_loggers(opts.logger)  # conf/logger/: none, one or several
    tidy_third_party_logging()  # Lightning is imported by now: its lines once, without advertisements
    quiet_bar = {} if interactive() else {"enable_progress_bar": False}  # callbacks.progress_lines logs instead
    if getattr(module.net, "fits_without_gradients", False):  # fitted already (fit_pixel_model): one epoch of one
        #   batch writes checkpoints/best.ckpt and last.ckpt and the validation scores, as a network's fit does
        quiet_bar.update(max_epochs=1, min_epochs=1, max_steps=-1, limit_train_batches=1)
    # the run's options are the hyperparameters (below), not the module's (none: its parts are injected)
    trainer = instantiate(opts.trainer, "trainer", callbacks=callbacks, logger=loggers or False,
                          default_root_dir=str(run_dir), use_distributed_sampler=not shard_here,
                          plugins=[SafeCheckpointIO()], enable_autolog_hparams=False, **quiet_bar)
    return trainer, loggers


def _test_and_record(opts: RunConfig, run_dir: Path, art: Artifacts, module, datamodule, trainer,
                     checkpoint: Path | None, fitted: bool) -> None:
    """The test split's scores, with their intervals, coverage and the protocol's, into ``metrics.json``."""
    # heavy: torch and Lightning, loaded only when a stage trains
    from deepgeo_runner.stages import train

    if checkpoint is not None and not fitted:  # predict.checkpoint: say if it is another net
        # heavy: torch, loaded only when a stage trains or predicts
        from deepgeo_runner.ml.checkpoint import load_checkpoint

        train.load_matching_weights(module, load_checkpoint(checkpoint, key="predict.checkpoint"), checkpoint)
    scores = train.test(trainer, module, datamodule, checkpoint)
    scores = with_intervals(opts, art, module, scores)
    scores["split"] = str(opts.test_split)
    scores = with_test_coverage(scores, art, str(opts.test_split))
    protocol = protocol_scores(opts, art, module, list(module.class_names))
    if protocol is not None:
        scores["protocol"] = protocol
    if trainer.global_rank == 0:
        write_text_atomic(run_dir / "metrics.json", strict_json(scores))
    art.metrics = scores


def fit_pixel_model(opts: RunConfig, art: Artifacts, net) -> list[float]:
    """Fit a pixel model (``model=pixel_forest``) on the labelled pixels of the training chips: at most
    its ``max_pixels``, a sample seeded by ``seed``, ignored pixels (unlabelled, nodata, the protocol's
    border ring) left out; read from the memory-mapped chip store a few chips at a time. Returns the
    sample's pixels per output (the model's class priors)."""
    # heavy: torch, loaded only when a stage trains
    from deepgeo_runner.ml.models.pixel_forest import training_pixels

    if art.chips is None:
        raise ConfigError(f"model={opts.model.get('_target_')} is fitted on the chip store's training pixels; "
                          "this run has none (data=torchgeo datamodules are not supported by the pixel baseline).")
    store = Path(art.chips.path)
    images = np.load(store / "train_image.npy", mmap_mode="r")
    masks = np.load(store / "train_mask.npy", mmap_mode="r")
    features, targets = training_pixels(images, masks, int(net.max_pixels), int(opts.seed))
    log.info("pixel model: %d training pixels (of the %d chips' labelled pixels, cap %d)", len(targets),
             len(masks), int(net.max_pixels))
    net.fit_pixels(features, targets, seed=int(opts.seed))
    return [float(c) for c in np.bincount(targets.astype(np.int64), minlength=int(net.classes))]


def teacher_train_masks(opts: RunConfig, art: Artifacts, classes: ClassTable, confidence: float):
    """The training chips' masks with a pixel forest's confident calls between the polygons
    (``augmentation.teacher``, :mod:`deepgeo_runner.ml.teacher`), or None when the teacher is off.

    The forest is the pixel baseline with its default options, fitted on the same capped sample of
    training pixels as ``model=pixel_forest``; nothing of it is kept but the labels."""
    if confidence <= 0 or art.chips is None:
        return None
    import time

    # heavy: torch and LightGBM, loaded only when a stage trains
    from deepgeo_runner.ml.models.pixel_forest import PixelForest, training_pixels
    from deepgeo_runner.ml.teacher import teacher_masks

    start = time.perf_counter()
    store = Path(art.chips.path)
    images = np.load(store / "train_image.npy", mmap_mode="r")
    masks = np.load(store / "train_mask.npy", mmap_mode="r")
    forest = PixelForest(images.shape[1], len(classes.names))
    features, targets = training_pixels(images, masks, forest.max_pixels, int(opts.seed))
    forest.fit_pixels(features, targets, seed=int(opts.seed))
    taught, counts = teacher_masks(images, masks, forest.predict_proba, confidence,
                                   keep_off_px=math.ceil(float(opts.data.boundary_ignore_px or 0)),
                                   reach_px=int(opts.augmentation.teacher_reach_px))
    per_class = ", ".join(f"{name} {n:,}" for name, n in zip(classes.names, counts["teacher_pixels_per_class"],
                                                              strict=False))
    log.info("augmentation.teacher: a pixel forest labelled %s px between the training polygons (p >= %.2f; "
             "%s px left unlabelled) in %.1f s", per_class or "no", confidence, f"{counts['unsure_pixels']:,}",
             time.perf_counter() - start)
    return taught


def protocol_scores(opts: RunConfig, art: Artifacts, module, class_names: list[str],
                    batch_size: int = 32) -> dict | None:
    """The test chips scored under the field's protocol (``data.boundary_ignore_px``): the pixels of the ring
    along every label border left out; ``None`` without a ring. Accuracy, macro and per-class F1/IoU as in the
    plain scores, and ``f1_<class>`` of each class (``f1_deforestation``: the PRODES studies' headline)."""
    ring = float(opts.data.boundary_ignore_px or 0)
    if not ring or art.chips is None:
        return None
    store, split = Path(art.chips.path), str(opts.test_split)
    if not (store / f"{split}_plain_mask.npy").exists():
        return None
    import torch  # heavy: only when a stage tests

    # heavy: torch, loaded only when a stage tests
    from deepgeo_runner.ml.metrics import scores_from_confusion
    from deepgeo_runner.ml.models._shape import align_target

    images = np.load(store / f"{split}_image.npy", mmap_mode="r")
    masks = np.load(store / f"{split}_mask.npy", mmap_mode="r")
    plain = np.load(store / f"{split}_plain_mask.npy", mmap_mode="r")
    k = len(class_names)
    confusion = np.zeros((k, k), dtype=np.int64)
    ce_sum, pixels = 0.0, 0
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(masks), batch_size):
                x = torch.from_numpy(np.array(images[start:start + batch_size], dtype=np.float32)).to(device)
                logits = module(x)
                target = align_target(logits, torch.from_numpy(np.array(masks[start:start + batch_size])).long()
                                      .to(device), module.net)
                valid = target != 255
                if not valid.any():
                    continue
                pred = logits.argmax(dim=1)
                codes = (target[valid] * k + pred[valid]).cpu().numpy()
                confusion += np.bincount(codes, minlength=k * k).reshape(k, k)
                ce_sum += float(torch.nn.functional.cross_entropy(logits.float(), target, ignore_index=255,
                                                                  reduction="sum"))
                pixels += int(valid.sum())
    finally:
        module.train(was_training)
    scores = scores_from_confusion(confusion, class_names, ce_sum / pixels if pixels else None)
    ignored = int((np.asarray(plain) != 255).sum() - (np.asarray(masks) != 255).sum())
    out = {"boundary_ignore_px": ring, "pixels": pixels, "ring_pixels_ignored": ignored, **scores}
    for name in class_names:
        out[f"f1_{name}"] = scores["per_class"][name]["f1"]
    log.info("test under the protocol (a %g px ring along label borders ignored, %d pixels): accuracy %.4f, F1 macro "
             "%.4f%s", ring, pixels, scores["accuracy"], scores["f1_macro"],
             "".join(f", F1 {n} {out[f'f1_{n}']:.4f}" for n in class_names if out[f"f1_{n}"] is not None))
    return out


def with_intervals(opts: RunConfig, art: Artifacts, module, scores: dict) -> dict:
    """``scores`` with block-bootstrap 95 % intervals (``ci95``) when the test chips came from our
    chip store (their blocks are known); unchanged otherwise."""
    chips = getattr(module, "test_chip_confusion", None)
    if chips is None or art.chips is None:
        return scores


    return add_block_intervals(scores, chips, art.chips.path, str(opts.test_split), block_size(opts.data),
                               int(opts.seed))


def with_test_coverage(scores: dict, art: Artifacts, split: str) -> dict:
    """``scores`` with ``test_coverage``: the pixels the test split scored / the scene's valid pixels
    (what share of the map the test scores speak for); null when the split comes from another scene
    (``data.split_scenes``) or the scene's valid pixels are unknown (a datamodule's chips)."""
    pixels, valid = scores.get("pixels"), art.valid_pixels
    external = split in art.split_scenes
    scores["test_coverage"] = float(pixels) / valid if pixels is not None and valid and not external else None
    return scores


def resume_checkpoint(opts: RunConfig, run_dir: Path, module, loggers: list | None = None) -> Path | None:
    """``checkpoints/last.ckpt`` of this run directory when the run resumes (``train.resume``), checked
    first: readable with weights_only, and written by the configured network (else a message saying
    what to change, not a traceback from deep inside Lightning)."""
    # heavy: torch, loaded only when a stage trains or predicts
    from deepgeo_runner.ml.checkpoint import load_checkpoint

    # heavy: torch and Lightning, loaded only when a stage trains
    from deepgeo_runner.stages import train

    last = run_dir / "checkpoints" / "last.ckpt"
    if not (opts.train.resume and last.is_file()):
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
    for logger in loggers or []:
        if hasattr(logger, "resume_after_epoch"):  # HistoryCSVLogger keeps the rows of the epochs done
            logger.resume_after_epoch = epoch
    log.info("fit: resuming from %s (%d epochs done, step %d)", last, epoch + 1, int(state.get("global_step", 0)))
    return last


def learn_task(run: RunState) -> None:
    """Stages ``fit``, ``test`` and ``predict`` of a scene, in one go: they share the module and the Trainer."""
    run.timed("fit_test_predict", learn_stage, run.opts, run.run_dir, run.art, run.classes, run.stages, run.rank,
              stop=run.stop)
