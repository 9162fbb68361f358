"""Segmentation scores from a confusion matrix (numpy only).

Every figure in metrics.json derives from one confusion matrix accumulated over the test
split, so the numbers agree with each other and reduce exactly across DDP ranks (sums).
"""

from __future__ import annotations

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
    from the test split neither drags the mean to zero nor inflates it.
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
    scores: dict = {
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "f1_macro": float(f1[present].mean()) if present.any() else 0.0,
        "iou_macro": float(iou[present].mean()) if present.any() else 0.0,
        "cross_entropy": float(cross_entropy) if cross_entropy is not None else None,
        "pixels": int(total),
        "per_class": {
            name: {
                "precision": float(precision[i]),
                "recall": float(recall[i]),
                "f1": float(f1[i]),
                "iou": float(iou[i]),
                "support": int(reference[i]),
            }
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": cm.astype(np.int64).tolist(),
        "class_names": list(class_names),
    }
    return scores
