"""predict from the run's options: the run's own scene, or a new scene prepared like the
checkpoint's training scene (``predict.image``), and its scores against ``predict.labels``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from deepgeo_runner.artifacts import Artifacts
from deepgeo_runner.atomic import write_text_atomic
from deepgeo_runner.checkpoint_path import checkpoint_file
from deepgeo_runner.classes import ClassTable
from deepgeo_runner.config.schema import RunConfig
from deepgeo_runner.geo.scene import all_tiles, date_groups
from deepgeo_runner.metrics import strict_json
from deepgeo_runner.pipeline.cached_stages import label_options
from deepgeo_runner.pipeline.labels import rasterize_labels

log = logging.getLogger(__name__)


def predict_stage(
    opts, run_dir: Path, art: Artifacts, classes: ClassTable, module, checkpoint: Path | None,
    device: str, rank: int = 0, world_size: int = 1,
) -> None:
    """Classify the whole prepared scene (or ``predict.image``) with the best weights.

    By default rank 0 alone does it. Called on every rank with ``rank``/``world_size``, the
    window rows are shared out and rank 0 assembles the one output (part files, no collective).
    """
    from deepgeo_runner.pipeline import train
    from deepgeo_runner.pipeline.apply import classify_prepared

    meta = train.load_weights(module, checkpoint) if checkpoint is not None else {}
    if hasattr(module.net, "output_crop") and hasattr(module.net, "mirror_pad"):
        module.net.mirror_pad = True  # valid padding: overlap-tile, logits as large as the window
    if opts.predict.image:  # prepared like the checkpoint's training scene; rank 0 alone
        if rank != 0:
            return
        art.prediction = predict_new_scene(opts, run_dir, module.net, meta or module.inference_meta, device)
        return
    table = {"class_ids": classes.ids, "class_names": classes.names, "class_colors": classes.colors}
    art.prediction = classify_prepared(
        module.net, art.prepared, run_dir / "prediction.tif", table,
        window=int(opts.predict.window or opts.data.chip_size), overlap=float(opts.predict.overlap),
        batch_size=int(opts.predict.batch_size), device=device, rank=rank, world_size=world_size,
        **predict_options(opts),
    )
    if rank == 0:
        polygons_stage(opts, art.prediction)


def predict_options(opts: RunConfig) -> dict[str, Any]:
    """The ``predict`` keys that :func:`deepgeo_runner.ml.predict.predict_scene` takes as is."""
    pred = opts.predict
    return {"blend": pred.blend, "probabilities": pred.probabilities, "entropy": bool(pred.entropy),
            "tta": bool(pred.tta), "amp": bool(pred.amp), "cog": bool(pred.cog)}


def predict_device(opts: RunConfig) -> str:
    """Without a Trainer: the current GPU, unless the trainer config asks for the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() and opts.trainer.get("accelerator") != "cpu" else "cpu"


def polygons_stage(opts: RunConfig, prediction: Path) -> None:
    """``predict.polygons``: the chosen classes as polygons with areas, and per-class totals."""
    if not opts.predict.polygons:
        return
    from deepgeo_runner.geo.polygonize import polygonize_classes

    polygonize_classes(prediction, prediction.with_name("prediction_polygons.gpkg"),
                       list(opts.predict.polygons), float(opts.predict.min_area_ha))


def predict_new_scene(opts: RunConfig, run_dir: Path, net, meta: dict, device: str | None = None) -> Path:
    """``predict.image``: prepare the new scene with the checkpoint's bands, indices and
    statistics (into ``run_dir/predict_input``) and classify it into ``run_dir/prediction.tif``."""
    from deepgeo_runner.pipeline.apply import classify_like_checkpoint

    prepared, prediction = classify_like_checkpoint(
        net, meta, opts.predict.image, run_dir / "predict_input", run_dir / "prediction.tif",
        window=int(opts.predict.window or meta.get("chip_size") or opts.data.chip_size),
        overlap=float(opts.predict.overlap), batch_size=int(opts.predict.batch_size),
        device=device or predict_device(opts), nodata=opts.data.nodata, **predict_options(opts),
    )
    polygons_stage(opts, prediction)
    if opts.predict.labels:
        score_new_scene(opts, run_dir, prepared.path, prediction, meta)
    return prediction


def score_new_scene(opts: RunConfig, run_dir: Path, prepared: Path, prediction: Path, meta: dict) -> None:
    """``predict.labels``: rasterize the new scene's labels with the checkpoint's classes, read
    the way its training labels were (class column, values, groups: recorded in the checkpoint),
    and score every labelled pixel of the class map into ``prediction_metrics.json``."""
    from deepgeo_runner.pipeline.evaluate import score_scene

    names, ids = list(meta["class_names"]), list(meta["class_ids"])
    of_interest = [n for n, i in zip(names, ids, strict=True) if i > 0]
    colors = [c for c, i in zip(meta["class_colors"], ids, strict=True) if i > 0]
    labelling = meta.get("labelling") or label_options(opts.data)  # older checkpoints: this run's data group
    reference = rasterize_labels(opts.predict.labels, prepared, run_dir / "predict_input" / "labels.tif",
                                 of_interest, colors, **labelling)
    scores = score_scene(reference, prediction, ids, names)
    scores.update(split="scene", image=opts.predict.image, labels=str(opts.predict.labels))
    write_text_atomic(run_dir / "prediction_metrics.json", strict_json(scores))
    log.info("scene %s: accuracy %.4f, F1 macro %.4f over %d labelled pixels", opts.predict.labels,
             scores["accuracy"], scores["f1_macro"], scores["pixels"])


def apply_checkpoint_stage(opts: RunConfig, run_dir: str | Path, art: Artifacts | None = None) -> Artifacts:
    """``deepgeo stages=[predict] predict.checkpoint=CKPT predict.image=NEW.tif``: the whole stage
    from the checkpoint alone (no data preparation of the training scene, no model config);
    ``run`` takes this path instead of the data stages when ``predict`` is the only stage.
    """
    from deepgeo_runner.pipeline.apply import build_net, read_checkpoint

    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    art = art or Artifacts()
    art.checkpoint = checkpoint_file(opts.predict.checkpoint)
    weights, meta = read_checkpoint(art.checkpoint)
    start = time.perf_counter()
    art.image_sources = date_groups(opts.predict.image)
    tiles = all_tiles(art.image_sources)
    art.image = tiles[0] if len(tiles) == 1 else None
    art.prediction = predict_new_scene(opts, run_dir, build_net(meta, weights), meta)
    art.timings["predict"] = round(time.perf_counter() - start, 2)
    return art
