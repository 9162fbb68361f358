"""What a run produced so far: the paths, cache keys and timings that later stages and provenance read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deepgeo_runner.stages.chips import ChipStore, SplitScene
from deepgeo_runner.stages.prepare import PreparedScene


@dataclass
class Artifacts:
    """What the stages produced so far, for the later ones and for provenance."""

    image: Path | None = None
    labels_source: Path | None = None
    image_sources: dict[str, list[Path]] = field(default_factory=dict)  # date → rasters a built scene came from
    band_names: list[str] = field(default_factory=list)
    prepared: PreparedScene | None = None
    labels: Path | None = None
    chips: ChipStore | None = None
    checkpoint: Path | None = None
    metrics: dict | None = None
    best_score: float | None = None  # best validation score (train.monitor) of the fit: a sweep's objective
    prediction: Path | None = None
    exported: dict[str, Path] = field(default_factory=dict)  # format → file written by the export stage
    stage_outputs: dict[str, Any] = field(default_factory=dict)  # stage → result of a row without an artifact
    prepare_extras: dict[str, Any] = field(default_factory=dict)
    split_scenes: dict[str, SplitScene] = field(default_factory=dict)  # val/test from other scenes
    input_profile: dict[str, Any] | None = None  # the training image's bands, dtype, percentiles (drift checks)
    valid_pixels: int | None = None  # the training scene's valid pixels (data check): test_coverage's denominator
    valid_mask: Any = None  # the training image's valid pixels (bool array, data check): where labels could be
    train_class_pixels: dict[str, int] | None = None  # labelled training pixels per class (data check)
    labels_sparse: bool | None = None  # the training labels leave class borders unlabelled (data check)
    label_coverage: dict[str, float] | None = None  # each class's labelled share of the valid pixels (data check)
    scene_priors: dict | None = None  # predict.prior_shift: the estimate the map was decided with (provenance)
    cache_keys: dict[str, str] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sieve: dict | None = None  # predict.mmu_ha: the unit, pixels changed, class areas before/after (provenance)
    status: str = "running"  # → "completed", or "interrupted" (SIGINT/SIGTERM) / "failed" during training
    error: str | None = None  # why training stopped, when it did not complete
