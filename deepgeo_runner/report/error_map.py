"""Where the map is wrong, per class: correct, omission and commission pixels (numpy only).

For class c on the pixels with a reference label (inside the scored area): *correct* where
reference and map are both c, *omission* where the reference is c and the map says another
class (the map misses c), *commission* where the map says c and the reference another class
(the map claims c wrongly). Omission and commission shares are 1 − recall and 1 − precision.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

OUTSIDE, OTHER, CORRECT, OMISSION, COMMISSION = 0, 1, 2, 3, 4
CODE_NAMES = {OTHER: "neither map nor reference is the class", CORRECT: "correct", OMISSION: "omission",
              COMMISSION: "commission"}


def error_codes(reference: np.ndarray, prediction: np.ndarray, class_id: int, class_ids: Sequence[int],
                area: np.ndarray | None = None) -> np.ndarray:
    """(H, W) uint8 codes of ``class_id``: OUTSIDE where the reference holds none of
    ``class_ids`` (or outside ``area``), else OTHER, CORRECT, OMISSION or COMMISSION."""
    if reference.shape != prediction.shape:
        raise ValueError(f"reference {reference.shape} and prediction {prediction.shape} differ in shape")
    labelled = np.isin(reference, np.asarray(class_ids))
    if area is not None:
        labelled &= area
    is_ref, is_map = reference == class_id, prediction == class_id
    codes = np.where(labelled, OTHER, OUTSIDE).astype(np.uint8)
    codes[labelled & is_ref & is_map] = CORRECT
    codes[labelled & is_ref & ~is_map] = OMISSION
    codes[labelled & ~is_ref & is_map] = COMMISSION
    return codes


def error_counts(codes: np.ndarray) -> dict[str, int]:
    """Pixels of each code: ``correct``, ``omission``, ``commission``, ``other``."""
    counts = np.bincount(codes.ravel(), minlength=5)
    return {"correct": int(counts[CORRECT]), "omission": int(counts[OMISSION]),
            "commission": int(counts[COMMISSION]), "other": int(counts[OTHER])}
