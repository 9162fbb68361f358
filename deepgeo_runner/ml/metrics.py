"""Segmentation scores from a confusion matrix (numpy only).

Every figure in metrics.json derives from one confusion matrix accumulated over the test
split, so the numbers agree with each other and reduce exactly across DDP ranks (sums).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def scores_from_confusion(
    confusion: np.ndarray,
    class_names: Sequence[str],
    cross_entropy: float | None = None,
) -> dict:
    """Accuracy, macro F1/IoU and per-class precision, recall, F1, IoU.

    Args:
        confusion: (K, K) counts, rows = reference, columns = prediction.
        class_names: one name per row.
        cross_entropy: mean per-pixel cross-entropy, reported alongside.

    Macro averages run over the classes present in the reference, so that a class absent
    from the test split neither drags the mean to zero nor inflates it; its own scores are
    None (null in metrics.json) with ``support`` 0, not a misleading 0.0.
    """
    cm = np.asarray(confusion, dtype=np.float64)
    if cm.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix {cm.shape} does not match {len(class_names)} classes")
    tp = np.diag(cm)
    reference = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    precision = _safe_ratio(tp, predicted)
    recall = _safe_ratio(tp, reference)
    f1 = _safe_ratio(2 * tp, reference + predicted)
    iou = _safe_ratio(tp, reference + predicted - tp)
    present = reference > 0
    total = cm.sum()

    def score(values: np.ndarray, i: int) -> float | None:  # undefined without reference pixels
        return float(values[i]) if present[i] else None

    scores: dict = {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "kappa": cohen_kappa(cm),
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "iou_macro": float(iou[present].mean()) if present.any() else 0.0,
        "cross_entropy": float(cross_entropy) if cross_entropy is not None else None,
        "pixels": int(total),
        "per_class": {
            name: {
                "precision": score(precision, i),
                "recall": score(recall, i),
                "f1": score(f1, i),
                "iou": score(iou, i),
                "support": int(reference[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.astype(np.int64).tolist(),
        "class_names": list(class_names),
    }
    return scores


def cohen_kappa(confusion: np.ndarray) -> float | None:
    """Cohen's kappa: agreement beyond what the class proportions alone would give by chance
    (the accuracy figure remote-sensing reviewers still ask for next to F1)."""
    cm = np.asarray(confusion, dtype=np.float64)
    total = cm.sum()
    if total == 0:
        return None
    observed = np.trace(cm) / total
    expected = float((cm.sum(axis=0) * cm.sum(axis=1)).sum() / total**2)
    return float((observed - expected) / (1 - expected)) if expected < 1 else (1.0 if observed == 1 else 0.0)


def _histograms(positives: np.ndarray, negatives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The (classes, bins) count histograms of the ROC and PR curves, as float64, checked alike."""
    pos = np.asarray(positives, dtype=np.float64)
    neg = np.asarray(negatives, dtype=np.float64)
    if pos.ndim != 2 or pos.shape != neg.shape:
        raise ValueError(f"histograms must both be (classes, bins), got {pos.shape} and {neg.shape}")
    return pos, neg


def roc_from_histograms(
    positives: np.ndarray, negatives: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, float | None]]:
    """One-vs-rest ROC curves and AUCs from per-class score histograms.

    Histograms (sums of counts) reduce exactly across DDP ranks and take bounded memory, unlike
    the per-pixel scores an exact ROC would need. Thresholds are the bin edges from high to
    low, so a curve has B + 1 points from (0, 0) to (1, 1); the trapezoid rule then gives the
    Mann–Whitney AUC of the scores quantized to the bins (ties within a bin count 1/2).

    Args:
        positives: (K, B) counts of labelled pixels of class k per score bin (low to high).
        negatives: (K, B) counts of labelled pixels of other classes per score bin.

    Returns:
        Per class ``(fpr, tpr, auc)``; ``auc`` is None (and the curve the chance diagonal) for a
        class with no positives or no negatives, where the ROC is undefined.
    """
    pos, neg = _histograms(positives, negatives)
    curves: list[tuple[np.ndarray, np.ndarray, float | None]] = []
    for p, n in zip(pos, neg, strict=True):
        n_pos, n_neg = p.sum(), n.sum()
        if n_pos == 0 or n_neg == 0:
            curves.append((np.array([0.0, 1.0]), np.array([0.0, 1.0]), None))
            continue
        tpr = np.concatenate([[0.0], np.cumsum(p[::-1]) / n_pos])
        fpr = np.concatenate([[0.0], np.cumsum(n[::-1]) / n_neg])
        tpr[-1] = fpr[-1] = 1.0  # exact end point despite rounding in the running sums
        auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
        curves.append((fpr, tpr, auc))
    return curves


def thin_curve(fpr: np.ndarray, tpr: np.ndarray, max_points: int = 257) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a monotone curve, ends kept, for metrics.json and plots.

    Repeated points (empty bins) go first; only then are points dropped evenly, so a curve
    of up to ``max_points`` distinct points is kept exactly.
    """
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2, got {max_points}")
    fpr, tpr = np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64)
    keep = np.ones(fpr.size, dtype=bool)
    keep[1:] = (np.diff(fpr) != 0) | (np.diff(tpr) != 0)
    fpr, tpr = fpr[keep], tpr[keep]
    if fpr.size > max_points:
        index = np.unique(np.round(np.linspace(0, fpr.size - 1, max_points)).astype(np.int64))
        fpr, tpr = fpr[index], tpr[index]
    return fpr, tpr


def _with_curves(scores: dict, curves: list, axes: tuple[str, str], score: str, key: str, max_points: int) -> dict:
    """``scores`` with each class's ``score`` (from ``curves``: per class ``(x, y, value)``), its macro
    mean over the classes where it is defined (None when none is), and the thinned curves under
    ``key`` as ``{axes[0]: [...], axes[1]: [...]}`` lists; existing keys are untouched."""
    names = list(scores["class_names"])
    if len(curves) != len(names):
        raise ValueError(f"{len(curves)} score histograms do not match {len(names)} classes")
    out = {**scores, "per_class": {name: dict(v) for name, v in scores["per_class"].items()}, key: {}}
    for name, (x, y, value) in zip(names, curves, strict=True):
        out["per_class"][name][score] = value
        if x.size:
            x, y = thin_curve(x, y, max_points)
        out[key][name] = {axes[0]: np.round(x, 6).tolist(), axes[1]: np.round(y, 6).tolist()}
    defined = [value for _, _, value in curves if value is not None]
    out[f"{score}_macro"] = float(np.mean(defined)) if defined else None
    return out


def add_roc_scores(
    scores: dict, positives: np.ndarray, negatives: np.ndarray, max_points: int = 257
) -> dict:
    """``scores`` (from :func:`scores_from_confusion`) with per-class ``auc``, ``auc_macro`` and
    the ``roc`` curves (``fpr``/``tpr`` lists per class) added; existing keys are untouched.

    ``auc_macro`` averages the classes whose AUC is defined (None when none is), for the same
    reason the other macro means skip classes absent from the reference.
    """
    return _with_curves(scores, roc_from_histograms(positives, negatives), ("fpr", "tpr"), "auc", "roc", max_points)


def pr_from_histograms(
    positives: np.ndarray, negatives: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray, float | None]]:
    """One-vs-rest precision–recall curves and average precision from the ROC's score histograms.

    Thresholds are the bin edges from high to low, as for :func:`roc_from_histograms`; the
    curve has a point per threshold that predicts anything. Average precision is the step sum
    ``Σ (R_j − R_{j−1}) P_j`` (no interpolation), which equals scikit-learn's
    ``average_precision_score`` on the scores quantized to the bins. Unlike the AUC, it depends
    on the class's prevalence: a classifier without skill scores about the prevalence.

    Returns:
        Per class ``(recall, precision, ap)``; ``ap`` is None (and the curve empty) for a
        class with no positives, where precision–recall is undefined.
    """
    pos, neg = _histograms(positives, negatives)
    curves: list[tuple[np.ndarray, np.ndarray, float | None]] = []
    for p, n in zip(pos, neg, strict=True):
        n_pos = p.sum()
        if n_pos == 0:
            curves.append((np.zeros(0), np.zeros(0), None))
            continue
        tp, fp = np.cumsum(p[::-1]), np.cumsum(n[::-1])
        keep = (tp + fp) > 0
        recall = tp[keep] / n_pos
        precision = tp[keep] / (tp[keep] + fp[keep])
        recall[-1] = 1.0  # exact end point despite rounding in the running sums
        ap = float(np.sum(np.diff(np.concatenate([[0.0], recall])) * precision))
        curves.append((recall, precision, ap))
    return curves


def add_pr_scores(
    scores: dict, positives: np.ndarray, negatives: np.ndarray, max_points: int = 257
) -> dict:
    """``scores`` with per-class ``ap`` (average precision), ``ap_macro`` and the ``pr`` curves
    (``recall``/``precision`` lists per class) added; existing keys are untouched."""
    return _with_curves(scores, pr_from_histograms(positives, negatives), ("recall", "precision"), "ap", "pr",
                        max_points)


def strict_json(scores: object, indent: int | None = 2) -> str:
    """``scores`` as strict JSON: NaN and ±inf become null, numpy numbers plain ones.

    Python's ``json`` writes ``NaN``, which no strict parser (browsers, jq, pandas' engine)
    accepts; a score that cannot be computed is written as null instead.
    """

    def finite(value: object) -> object:
        if isinstance(value, dict):
            return {str(k): finite(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [finite(v) for v in value]
        if isinstance(value, np.ndarray):
            return finite(value.tolist())
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not np.isfinite(value):
            return None
        return value

    return json.dumps(finite(scores), indent=indent, allow_nan=False, default=str)
