"""Block-bootstrap confidence intervals of test scores (numpy only).

Neighbouring pixels are strongly correlated, so treating millions of test pixels as
independent would give absurdly narrow intervals. The units resampled here are spatial
blocks: the test scores are recomputed from the summed confusion matrices of ``n`` blocks
drawn with replacement, ``resamples`` times, and the 2.5th and 97.5th percentiles of each
score are its 95 % interval (percentile bootstrap).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 1000
LEVEL = 0.95


def resample_weights(n_units: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n_units) how often each unit is drawn in each resample: the draws are
    ``default_rng(seed).integers(0, n_units, size=(resamples, n_units))``."""
    draws = np.random.default_rng(seed).integers(0, n_units, size=(resamples, n_units))
    flat = (draws + n_units * np.arange(resamples)[:, None]).ravel()
    return np.bincount(flat, minlength=resamples * n_units).reshape(resamples, n_units)


def batch_scores(confusions: np.ndarray) -> dict[str, np.ndarray]:
    """The scores of :func:`deepgeo_runner.ml.metrics.scores_from_confusion` for a stack of (R, K, K)
    confusion matrices at once; per-class F1 is NaN where the class has no reference pixel, and
    the macro means run over the classes present, as there."""
    cm = np.asarray(confusions, dtype=np.float64)
    tp = np.diagonal(cm, axis1=1, axis2=2)
    reference, predicted = cm.sum(axis=2), cm.sum(axis=1)
    total = cm.sum(axis=(1, 2))
    present = reference > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(present, 2 * tp / np.where(present, reference + predicted, 1), np.nan)
        iou = np.where(present, tp / np.where(present, reference + predicted - tp, 1), np.nan)
        accuracy = np.where(total > 0, tp.sum(axis=1) / np.maximum(total, 1), np.nan)
        observed = accuracy
        expected = (reference * predicted).sum(axis=1) / np.maximum(total, 1) ** 2
        kappa = np.where(expected < 1, (observed - expected) / np.where(expected < 1, 1 - expected, 1),
                         np.where(observed == 1, 1.0, 0.0))
    kappa = np.where(total > 0, kappa, np.nan)
    any_present = present.any(axis=1)
    f1_macro = np.where(any_present, np.nansum(f1, axis=1) / np.maximum(present.sum(axis=1), 1), np.nan)
    iou_macro = np.where(any_present, np.nansum(iou, axis=1) / np.maximum(present.sum(axis=1), 1), np.nan)
    return {"accuracy": accuracy, "kappa": kappa, "f1_macro": f1_macro, "iou_macro": iou_macro, "f1": f1}


def _interval(values: np.ndarray, level: float) -> list[float] | None:
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(values, [tail, 100 - tail])
    return [float(lo), float(hi)]


def block_bootstrap(unit_confusions: np.ndarray, class_names: Sequence[str], resamples: int = RESAMPLES,
                    seed: int = 0, level: float = LEVEL) -> dict:
    """Percentile intervals of accuracy, kappa, f1_macro, iou_macro and per-class F1 over
    ``resamples`` resamples of the units (``unit_confusions``: (n, K, K), rows reference).

    A per-class interval runs over the resamples where the class has reference pixels (None
    when it never has). Deterministic for a given ``seed``.
    """
    cms = np.asarray(unit_confusions, dtype=np.int64)
    if cms.ndim != 3 or cms.shape[1:] != (len(class_names), len(class_names)) or cms.shape[0] < 1:
        raise ValueError(f"unit confusions must be (n >= 1, {len(class_names)}, {len(class_names)}), got {cms.shape}")
    n, k = cms.shape[0], len(class_names)
    weights = resample_weights(n, resamples, seed)
    totals = (weights @ cms.reshape(n, k * k)).reshape(resamples, k, k)
    scores = batch_scores(totals)
    out: dict = {key: _interval(scores[key], level) for key in ("accuracy", "kappa", "f1_macro", "iou_macro")}
    out["per_class"] = {name: {"f1": _interval(scores["f1"][:, i], level)} for i, name in enumerate(class_names)}
    return out
