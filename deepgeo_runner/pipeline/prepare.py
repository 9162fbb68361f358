"""Moved to :mod:`deepgeo_runner.stages.prepare`. This path stays only for code written against the
README of deepgeo-runner 0.1.0, which documented it; new code imports from ``deepgeo_runner.stages``."""

import warnings

from deepgeo_runner.stages.prepare import prepare_scene

__all__ = ["prepare_scene"]

warnings.warn("deepgeo_runner.pipeline.prepare moved to deepgeo_runner.stages.prepare", DeprecationWarning,
              stacklevel=2)
