"""The assess stage's figure: each class's mapped area beside its error-adjusted area and 95 % interval.

One small panel per class, each on its own scale: a rare class such as deforestation (a few
thousand hectares) would vanish beside stable classes of hundreds of thousands on a shared axis,
yet it is the class whose bias matters most.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path

from deepgeo_runner.core.classes import class_palette
from deepgeo_runner.report.plots import _new_figure, _save_atomic

MAPPED_COLOR = "#bdbdbd"


def plot_assessment_area(per_class: Mapping[str, Mapping], path: str | os.PathLike,
                         colors: Mapping[str, str] | None = None,
                         title: str = "Mapped vs error-adjusted area (95 % interval)") -> Path:
    """Bars of ``mapped_area_ha`` and ``area_ha`` with ``area_ci95_ha`` per class (assessment.json)."""
    names = list(per_class)
    palette = dict(zip(names, class_palette(len(names)), strict=True))
    palette.update(colors or {})
    ncols = min(4, max(1, len(names)))
    nrows = math.ceil(len(names) / ncols)
    fig = _new_figure(2.6 * ncols + 0.4, 2.6 * nrows + 0.6)
    for i, name in enumerate(names):
        entry = per_class[name]
        ax = fig.add_subplot(nrows, ncols, i + 1)
        mapped, adjusted, ci = entry.get("mapped_area_ha"), entry.get("area_ha"), entry.get("area_ci95_ha")
        ax.bar([0], [mapped or 0.0], color=MAPPED_COLOR, width=0.6)
        if adjusted is not None:
            err = [[adjusted - ci[0]], [ci[1] - adjusted]] if ci else None
            ax.bar([1], [adjusted], color=palette.get(name, "#4d4d4d"), width=0.6, yerr=err, capsize=6,
                   error_kw={"elinewidth": 1.4, "ecolor": "#222222"})
        ax.set_xticks([0, 1], labels=["mapped", "adjusted"])
        ax.set_xlim(-0.6, 1.6)
        ax.set_ylim(bottom=0)
        ax.set_title(name, fontsize=10)
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 5))
        if i % ncols == 0:
            ax.set_ylabel("hectares")
        ax.grid(axis="y", color="#eeeeee")
        ax.set_axisbelow(True)
    fig.suptitle(title, fontsize=12)
    return _save_atomic(fig, path)
