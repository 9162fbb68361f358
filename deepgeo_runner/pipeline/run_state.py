"""What a stage's task gets from the runner: the run's options and folders, what the stages
produced so far, and which stages were asked for."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepgeo_runner.config.schema import RunConfig
from deepgeo_runner.config.stages import needed
from deepgeo_runner.core.classes import ClassTable
from deepgeo_runner.pipeline.artifacts import Artifacts


@dataclass
class RunState:
    """One run as the tasks of the stage table see it (``task(run)``)."""

    opts: RunConfig
    run_dir: Path
    cache_dir: Path
    art: Artifacts
    classes: ClassTable
    stages: list[str]  # the stages asked for, in the run's order
    rank: int = 0
    split_polygons: Any = None  # data.split_vector, read before any raster work
    split_map: Any = None  # the train/val/test map, made after rasterize
    stop: Any = None  # the run's SignalStop, told the Trainer so that a signal stops training cleanly
    _needed: set[str] = field(default_factory=set, repr=False)

    def __post_init__(self) -> None:
        self._needed = needed(self.stages)

    def builds(self, stage: str) -> bool:
        """The stage was asked for: a cached one builds its entry (else only reuses it)."""
        return stage in self.stages

    def runs(self, stage: str) -> bool:
        """The stage was asked for or another asked-for stage needs it."""
        return stage in self._needed

    def timed(self, name: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``, its wall time recorded as ``timings_s[name]`` in the run's provenance."""
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        self.art.timings[name] = round(time.perf_counter() - start, 2)
        return result
