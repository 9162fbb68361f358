"""Moved to :mod:`deepgeo_runner.stages.labels`. This path stays only for code written against the
README of deepgeo-runner 0.1.0, which documented it; new code imports from ``deepgeo_runner.stages``."""

import warnings

from deepgeo_runner.stages.labels import rasterize_labels

__all__ = ["rasterize_labels"]

warnings.warn("deepgeo_runner.pipeline.labels moved to deepgeo_runner.stages.labels", DeprecationWarning,
              stacklevel=2)
