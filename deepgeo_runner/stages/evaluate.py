"""Score a whole-scene class map against reference labels on the same grid.

This is how a checkpoint is evaluated on a scene it never saw: the scene is classified whole
(:mod:`deepgeo_runner.stages.apply`), its labels are rasterized onto that grid, and every
labelled pixel counts once — no chips, no split. Read window by window, so memory does not
grow with the scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import rasterio

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.raster_io import iter_windows
from deepgeo_runner.ml.metrics import scores_from_confusion


def confusion_of_rasters(reference: str | Path, prediction: str | Path, class_ids: Sequence[int],
                         window: int = 2048) -> np.ndarray:
    """(K, K) counts, rows = reference, columns = prediction, over the pixels whose reference
    value is one of ``class_ids`` (anything else — unlabelled, nodata, other classes — is skipped)."""
    ids = np.asarray(class_ids, dtype=np.int64)
    lut = np.full(256, -1, dtype=np.int64)
    lut[ids] = np.arange(len(ids))
    k = len(ids)
    confusion = np.zeros((k, k), dtype=np.int64)
    with rasterio.open(reference) as ref, rasterio.open(prediction) as pred:
        if ref.shape != pred.shape or ref.transform != pred.transform or ref.crs != pred.crs:
            raise InputDataError(
                f"reference '{reference}' and prediction '{prediction}' are not on the same grid "
                f"({ref.shape} {ref.crs} vs {pred.shape} {pred.crs})."
            )
        for win in iter_windows(ref.height, ref.width, window):
            truth = lut[ref.read(1, window=win).astype(np.int64)]
            guess = lut[pred.read(1, window=win).astype(np.int64)]
            keep = (truth >= 0) & (guess >= 0)  # labels are already blank where the input had no data
            confusion += np.bincount(truth[keep] * k + guess[keep], minlength=k * k).reshape(k, k)
    return confusion


def score_scene(reference: str | Path, prediction: str | Path, class_ids: Sequence[int],
                class_names: Sequence[str]) -> dict:
    """metrics.json contents for a whole scene (same keys as the test split's, no cross-entropy)."""
    confusion = confusion_of_rasters(reference, prediction, class_ids)
    if confusion.sum() == 0:
        raise InputDataError(
            f"the labels '{reference}' mark no pixel of the classes {list(class_names)} inside the scene: "
            "check predict.labels, data.class_column and data.class_values."
        )
    return scores_from_confusion(confusion, class_names)
