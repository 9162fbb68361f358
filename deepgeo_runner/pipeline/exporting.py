"""Stage ``export``: the run's trained model written to travel (``export.formats`` of onnx, pt2, mlm) into
``export/`` of the run directory, by the same function as ``deepgeo-export``
(:func:`deepgeo_runner.export.run.export_model`). The checkpoint is the one this run fitted (its best), or
``predict.checkpoint``; the card carries the run's test metrics and config when the run has written them.
"""

from __future__ import annotations

import logging
from pathlib import Path

from deepgeo_runner.config.schema import RunConfig
from deepgeo_runner.core.checkpoint_path import checkpoint_file
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.pipeline.artifacts import Artifacts
from deepgeo_runner.pipeline.predicting import own_model_target
from deepgeo_runner.pipeline.run_state import RunState

log = logging.getLogger(__name__)

EXPORT_DIR = "export"


def export_stage(opts: RunConfig, run_dir: Path, art: Artifacts) -> dict[str, Path]:
    """Export the run's checkpoint in ``opts.export.formats`` into ``run_dir/export``; return format → file."""
    # heavy: torch (and onnx for model.onnx), loaded only when the stage runs
    from deepgeo_runner.export.run import export_model

    checkpoint = art.checkpoint or (checkpoint_file(opts.predict.checkpoint) if opts.predict.checkpoint else None)
    if checkpoint is None:
        raise ConfigError("stage export has no checkpoint to export: add fit to stages, or set "
                          "predict.checkpoint=RUN_DIR (or a .ckpt).")
    exported = export_model(checkpoint, Path(run_dir) / EXPORT_DIR, list(opts.export.formats),
                            tile=opts.export.tile, trusted_target=own_model_target(opts))
    art.exported = dict(exported.files)
    return art.exported


def export_task(run: RunState) -> None:
    """Stage ``export`` (the stage table's row): after fit/test/predict, rank 0 alone."""
    run.timed("export", export_stage, run.opts, run.run_dir, run.art)
