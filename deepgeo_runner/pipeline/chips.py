"""Moved to :mod:`deepgeo_runner.stages.chips`. This path stays only for code written against the
README of deepgeo-runner 0.1.0, which documented it; new code imports from ``deepgeo_runner.stages``."""

import warnings

from deepgeo_runner.stages.chips import build_chip_store

__all__ = ["build_chip_store"]

warnings.warn("deepgeo_runner.pipeline.chips moved to deepgeo_runner.stages.chips", DeprecationWarning,
              stacklevel=2)
