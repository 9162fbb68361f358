"""The class table of a run: names, the ids written in class maps, and one palette of colours.

Every place that colours a class (the label and prediction rasters' colour tables, the plots)
takes its colours from :func:`class_palette`, so class 11 never turns into the grey of class 12.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

# ``data.background``: pixels outside every labelled class are ignored, or learned as class 0
Background = StrEnum("Background", [("ignore", "ignore"), ("class", "class")])

DEFAULT_PALETTE = ["#1b7837", "#d6604d", "#2166ac", "#fdb863", "#8073ac", "#35978f",
                   "#e08214", "#b2abd2", "#c51b7d", "#7fbc41"]
RESERVED = {"#000000", "#d9d9d9", "#888888"}  # background, nodata grey, unlabelled


def class_palette(n: int) -> list[str]:
    """``n`` distinct ``'#rrggbb'`` colours: the ten of :data:`DEFAULT_PALETTE`, then a
    golden-angle walk of hues (distinct however many classes a map has)."""
    palette = DEFAULT_PALETTE[:n]
    i = 0
    while len(palette) < n:
        hue = (i * 0.618033988749895) % 1.0
        sat, val = (0.65, 0.85) if i % 2 == 0 else (0.45, 0.6)
        colour = "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)))
        if colour not in palette and colour not in RESERVED:
            palette.append(colour)
        i += 1
    return palette


@dataclass
class ClassTable:
    """The model's outputs: their names, the ids written in class maps, and colours."""

    names: list[str]
    ids: list[int]
    colors: list[str]
    background_is_class: bool
    n_classes: int  # classes of interest (without background)

    @classmethod
    def of(cls, classes: Sequence[str], colors: Sequence[str] | None = None, background_is_class: bool = False,
           mask_values: bool = False) -> ClassTable:
        """The table of ``classes`` (ids 1..N; with ``background_is_class`` background 0 first;
        with ``mask_values`` the classes are a datamodule's mask values 0..K-1 themselves)."""
        classes = list(classes)
        colors = list(colors) if colors else []
        colors += class_palette(len(classes))[len(colors):]
        if mask_values:
            return cls(classes, list(range(len(classes))), colors, False, len(classes))
        if background_is_class:
            return cls(["background"] + classes, list(range(len(classes) + 1)),
                       ["#000000"] + colors, True, len(classes))
        return cls(classes, list(range(1, len(classes) + 1)), colors, False, len(classes))
