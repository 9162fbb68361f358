"""Stage ``export``: the run's trained model written to travel (``export.formats`` of onnx, pt2, mlm) into
``export/`` of the run directory, by the same function as ``deepgeo-export``
(:func:`deepgeo_runner.export.run.export_model`). The checkpoint is the one this run fitted (its best), or
``predict.checkpoint``; the card carries the run's test metrics and config when the run has written them.

A stage of the table's plain kind: this function, and its options from
:func:`deepgeo_runner.pipeline.stage_options.export_options`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from deepgeo_runner.core.errors import ConfigError


def export_run_model(checkpoint: Path | None, out_dir: Path, formats: Sequence[str], tile: int | None,
                     trusted_target: str | None) -> dict[str, Path]:
    """Export ``checkpoint`` in ``formats`` into ``out_dir``; return format → file (the run's ``exported``)."""
    # heavy: torch (and onnx for model.onnx), loaded only when the stage runs
    from deepgeo_runner.export.run import export_model

    if checkpoint is None:
        raise ConfigError("stage export has no checkpoint to export: add fit to stages, or set "
                          "predict.checkpoint=RUN_DIR (or a .ckpt).")
    exported = export_model(checkpoint, Path(out_dir), list(formats), tile=tile, trusted_target=trusted_target)
    return dict(exported.files)
