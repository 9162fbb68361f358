"""The allowed values of the geo options whose code needs rasterio or geopandas to import.

Listed here, light, so that the config schema can type its keys with them (a bad value fails
while the config is composed, naming the valid ones) without loading GDAL; the owners
(``geo/scene.py`` resampling, ``geo/rasterize.py`` other classes, ``geo/chips.py`` and
``stages/chips.py`` splits and chip strategies) take their lists from these enums.
"""

from __future__ import annotations

from enum import StrEnum


class Resampling(StrEnum):
    """How pixels are resampled when the scene is reprojected or resized (``data.resampling``)."""

    nearest = "nearest"
    bilinear = "bilinear"
    cubic = "cubic"
    average = "average"
    mode = "mode"


class OtherClasses(StrEnum):
    """Labelled features of no class of interest (``data.other_classes``)."""

    background = "background"
    ignore = "ignore"


class ChipStrategy(StrEnum):
    """How training chips are drawn (``data.chip_strategy``)."""

    random = "random"
    grid = "grid"
    points = "points"


class Split(StrEnum):
    """The splits of a scene, in order (``test_split`` names one)."""

    train = "train"
    val = "val"
    test = "test"
