"""The allowed values of the torch layer's options, importable without torch.

The config schema types its keys with these enums, so a bad value fails while the config is
composed, listing the valid ones, long before torch loads; ``ml/augment.py``, ``ml/predict.py``
and ``lit/datamodule.py`` take their lists from here.
"""

from __future__ import annotations

from enum import StrEnum


class Augmentation(StrEnum):
    """Train-time augmentation (``augmentation.name``)."""

    none = "none"
    d4 = "d4"
    d4_expand = "d4_expand"


class D4Op(StrEnum):
    """The 8 elements of the dihedral group D4, in the index order of ``ml.augment.dihedral``."""

    identity = "identity"
    rot90 = "rot90"
    rot180 = "rot180"
    rot270 = "rot270"
    transpose = "transpose"
    flip_v = "flip_v"
    antitranspose = "antitranspose"
    flip_h = "flip_h"


class ProbabilityFormat(StrEnum):
    """How class probabilities are written (``predict.probabilities``)."""

    none = "none"
    float16 = "float16"
    uint8 = "uint8"
