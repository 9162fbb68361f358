"""Moved to :mod:`deepgeo_runner.stages.apply`. This path stays only for code written against the
README of deepgeo-runner 0.1.0, which documented it; new code imports from ``deepgeo_runner.stages``."""

import warnings

from deepgeo_runner.stages.apply import apply_checkpoint

__all__ = ["apply_checkpoint"]

warnings.warn("deepgeo_runner.pipeline.apply moved to deepgeo_runner.stages.apply", DeprecationWarning,
              stacklevel=2)
