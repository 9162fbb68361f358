"""Moved to :mod:`deepgeo_runner.stages.train`. This path stays only for code written against the
README of deepgeo-runner 0.1.0, which documented it; new code imports from ``deepgeo_runner.stages``."""

import warnings

from deepgeo_runner.stages.train import fit, test

__all__ = ["fit", "test"]

warnings.warn("deepgeo_runner.pipeline.train moved to deepgeo_runner.stages.train", DeprecationWarning,
              stacklevel=2)
