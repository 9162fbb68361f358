"""Where a run's weights are, given the checkpoint file itself or the run directory that made it.

Kept free of torch so that the config check can resolve it in well under a second.
"""

from __future__ import annotations

from pathlib import Path

from deepgeo_runner.core.errors import ConfigError

_IN_A_RUN = ("checkpoints/best.ckpt", "checkpoints/last.ckpt", "best.ckpt", "last.ckpt")


def checkpoint_file(value: str | Path, key: str = "predict.checkpoint") -> Path:
    """The ``.ckpt`` named by ``value``: a file, or a finished run's directory (its best
    checkpoint, else its last), so that ``predict.checkpoint=runs/X`` applies run X."""
    path = Path(value)
    if path.is_dir():
        for name in _IN_A_RUN:
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"{key}='{value}' is a folder without checkpoints/best.ckpt or last.ckpt: "
                          "give a run directory that finished training, or a .ckpt file.")
    if not path.is_file():
        raise ConfigError(f"{key}='{value}': no such file or run directory (looked in {Path.cwd()}).")
    return path
