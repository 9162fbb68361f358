"""The assess stage's choices, importable by the config schema without numpy."""

from __future__ import annotations

from enum import StrEnum


class Allocation(StrEnum):
    """How the total sample size is shared among the strata (``assess.allocation``)."""

    proportional = "proportional"  # n_h ∝ stratum size: efficient for overall accuracy, starves rare classes
    equal = "equal"  # the same n_h everywhere: best for user's accuracies, poor for area
    min_per_stratum = "min_per_stratum"  # at least assess.min_per_stratum each, the rest proportional
