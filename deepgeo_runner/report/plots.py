"""Report figures as PNG files, drawn from plain numpy arrays.

Figures are built on :class:`matplotlib.figure.Figure` with an explicit Agg canvas and never
touch ``pyplot``: no global state, no display needed, safe in worker threads and processes.
Every PNG is written to a temporary file in the target folder and moved into place with
:func:`os.replace`, so a crash or a concurrent reader never sees a half-written image.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from deepgeo_runner.core.atomic import atomic_path
from deepgeo_runner.core.classes import class_palette
from deepgeo_runner.report.error_map import CODE_NAMES, error_counts

__all__ = [
    "plot_chip_map",
    "plot_class_distribution",
    "plot_feature_histograms",
    "plot_class_map",
    "plot_composite",
    "plot_confusion_matrix",
    "plot_error_map",
    "plot_pr_curves",
    "plot_roc_curves",
    "plot_training_curves",
]

DPI = 110
NODATA_COLOR = "#d9d9d9"  # light grey: nodata / unlabelled, distinct from every palette entry
BACKGROUND_COLOR = "#000000"
UNKNOWN_COLOR = "#ff00ff"  # ids outside the class table: loud on purpose, they signal a bug
MAX_DISPLAY_PX = 2048  # larger rasters are decimated before drawing to bound memory and time
SCORE_TOKENS = ("f1", "acc", "iou", "dice", "kappa", "precision", "recall")


# --------------------------------------------------------------------------------------------
# helpers


def _new_figure(width: float, height: float) -> Figure:
    """A pyplot-free figure with an Agg canvas and constrained layout."""
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_atomic(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG via a temp file in the same folder, then rename it into place."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.12, facecolor="white")
    return path


def _decimation_step(height: int, width: int) -> int:
    return max(1, math.ceil(max(height, width) / MAX_DISPLAY_PX))


def _map_figsize(height: int, width: int, extra_width: float = 0.0) -> tuple[float, float]:
    """Figure size that keeps the raster's aspect ratio within sensible bounds."""
    aspect = height / max(width, 1)
    w, h = 7.0, 7.0 * aspect
    if h > 9.0:
        w, h = max(9.0 / aspect, 2.5), 9.0
    elif h < 2.5:
        h = 2.5
    return w + extra_width, h + 0.6


def _format_count(value: float) -> str:
    """Compact count for matrix cells: exact below 10 000, then k / M / G."""
    if not float(value).is_integer():
        return f"{value:.3g}"
    value = int(value)
    if abs(value) < 10_000:
        return str(value)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= div:
            return f"{value / div:.3g}{suffix}"
    return str(value)  # pragma: no cover


def _format_share(share: float) -> str:
    if share == 0:
        return "0 %"
    if share < 0.001:
        return "<0.1 %"
    return f"{100 * share:.1f} %"


# --------------------------------------------------------------------------------------------
# colour composite


def _stretched_rgb(bands: np.ndarray, valid: np.ndarray | None,
                   percentiles: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) per-band percentile stretch in [0, 1], nodata grey; and the valid mask."""
    data = bands.astype(np.float64)
    mask = np.all(np.isfinite(data), axis=0)
    if valid is not None:
        mask &= valid
    rgb = np.zeros(data.shape[1:] + (3,), dtype=np.float64)
    if mask.any():
        for b in range(3):
            lo, hi = np.percentile(data[b][mask], list(percentiles))
            if hi > lo:
                rgb[..., b] = np.clip((np.nan_to_num(data[b]) - lo) / (hi - lo), 0.0, 1.0)
    rgb[~mask] = to_rgb(NODATA_COLOR)
    return rgb, mask


def plot_composite(
    bands: np.ndarray,
    path: str | os.PathLike,
    title: str = "Colour composite",
    valid: np.ndarray | None = None,
    percentiles: tuple[float, float] = (2, 98),
) -> Path:
    """Percentile-stretched RGB composite; nodata drawn grey so it is not read as dark ground.

    Args:
        bands: (3, H, W) values in R, G, B order (reflectance or any float).
        path: the PNG to write.
        valid: optional (H, W) mask of usable pixels; non-finite values are always invalid.
        percentiles: low/high percentiles of the per-band linear stretch, over valid pixels.
    """
    bands = np.asarray(bands)
    if bands.ndim != 3 or bands.shape[0] != 3:
        raise ValueError(f"bands must be (3, H, W) in R, G, B order, got {bands.shape}")
    _, height, width = bands.shape
    if valid is not None:
        valid = np.asarray(valid, dtype=bool)
        if valid.shape != (height, width):
            raise ValueError(f"valid mask {valid.shape} does not match bands {(height, width)}")
    step = _decimation_step(height, width)
    rgb, mask = _stretched_rgb(bands[:, ::step, ::step], None if valid is None else valid[::step, ::step],
                               percentiles)
    lo_p, hi_p = percentiles
    n_valid = int(mask.sum())

    fig = _new_figure(*_map_figsize(height, width))
    ax = fig.add_subplot()
    ax.imshow(rgb, interpolation="antialiased")
    ax.set_title(title, fontsize=12)
    ax.set_axis_off()
    note = f"{height} × {width} px · per-band stretch {lo_p:g}–{hi_p:g} percentile"
    if not n_valid:
        note = f"{height} × {width} px · no valid pixels"
    ax.text(0.5, -0.01, note, transform=ax.transAxes, ha="center", va="top", fontsize=8,
            color="#555555")
    if n_valid < mask.size:
        ax.legend(handles=[Patch(facecolor=NODATA_COLOR, edgecolor="#888888", label="nodata")],
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=9,
                  frameon=False)
    return _save_atomic(fig, path)


# --------------------------------------------------------------------------------------------
# class map


def plot_class_map(
    classes: np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str],
    class_colors: Sequence[str],
    title: str,
    ignore_value: int = 255,
    ignore_label: str = "unlabelled / nodata",
    first_id: int = 1,
) -> Path:
    """Categorical map (reference or prediction) with a legend outside the image.

    Id ``first_id + i`` is ``class_names[i]`` in ``class_colors[i]``. Every named class is
    listed, with its share of the map, so reference and prediction maps share one legend;
    ``ignore_value`` (light grey), a background id 0 (black, only when ``first_id == 1``) and
    any unexpected id (magenta) are listed only when present.
    """
    names = list(class_names)
    colors = list(class_colors)
    if len(colors) < len(names):
        raise ValueError(f"{len(names)} class names but only {len(colors)} colours")
    arr = np.asarray(classes)
    if arr.ndim != 2:
        raise ValueError(f"classes must be (H, W), got {arr.shape}")
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.where(np.isfinite(arr), arr, ignore_value).astype(np.int64)
    # entries: (id, label, colour, always shown)
    entries: list[tuple[int, str, str, bool]] = [
        (first_id + i, name, colors[i], True) for i, name in enumerate(names)
    ]
    if first_id == 1 and ignore_value != 0:
        entries.insert(0, (0, "background", BACKGROUND_COLOR, False))
    entries.append((int(ignore_value), ignore_label, NODATA_COLOR, False))
    rgb, handles = _paint_classes(arr, entries)
    return _draw_class_map(rgb, handles, title, arr.shape, path)


def _paint_classes(arr: np.ndarray, entries: Sequence[tuple[int, str, str, bool]]) -> tuple[np.ndarray, list[Patch]]:
    """The map's colours (decimated to what a figure shows) and one legend patch per id present or always
    listed, with its share of the full-resolution map; ids no entry names are magenta."""
    height, width = arr.shape
    total = max(arr.size, 1)
    counts = _id_counts(arr)
    step = _decimation_step(height, width)
    shown = arr[::step, ::step]
    rgb = np.empty(shown.shape + (3,), dtype=np.float32)
    rgb[:] = to_rgb(UNKNOWN_COLOR)
    handles: list[Patch] = []
    seen: set[int] = set()
    for cid, label, colour, always in entries:
        if cid in seen:
            continue
        seen.add(cid)
        rgb[shown == cid] = to_rgb(colour)
        n = counts.get(cid, 0)
        if always or n:
            handles.append(Patch(facecolor=colour, edgecolor="#666666", linewidth=0.5,
                                 label=f"{label} ({_format_share(n / total)})"))
    n_unknown = total - sum(counts.get(cid, 0) for cid in seen) if arr.size else 0
    if n_unknown:
        handles.append(Patch(facecolor=UNKNOWN_COLOR, edgecolor="#666666", linewidth=0.5,
                             label=f"other ids ({_format_share(n_unknown / total)})"))
    return rgb, handles


def _draw_class_map(rgb: np.ndarray, handles: list[Patch], title: str, shape: tuple[int, int],
                    path: str | os.PathLike) -> Path:
    """The painted map with its size under it and the legend outside the image (two columns past 20 entries)."""
    height, width = shape
    ncol = 1 if len(handles) <= 20 else 2
    fig = _new_figure(*_map_figsize(height, width, extra_width=2.2 * ncol))
    ax = fig.add_subplot()
    ax.imshow(rgb, interpolation="nearest")
    ax.set_title(title, fontsize=12)
    ax.set_axis_off()
    ax.text(0.5, -0.01, f"{height} × {width} px", transform=ax.transAxes, ha="center",
            va="top", fontsize=8, color="#555555")
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0,
              fontsize=9 if len(handles) <= 20 else 8, ncol=ncol, frameon=False,
              title="Class (share of pixels)", title_fontsize=9, alignment="left")
    return _save_atomic(fig, path)


def _id_counts(arr: np.ndarray) -> dict[int, int]:
    """Pixel count per id, by bincount when the id range is small (fast on big rasters)."""
    if arr.size == 0:
        return {}
    lo, hi = int(arr.min()), int(arr.max())
    if hi - lo < 1_000_000:
        counts = np.bincount(arr.ravel().astype(np.int64) - lo)
        ids = np.nonzero(counts)[0]
        return {int(i + lo): int(counts[i]) for i in ids}
    ids, counts = np.unique(arr, return_counts=True)
    return {int(i): int(c) for i, c in zip(ids, counts, strict=True)}


# --------------------------------------------------------------------------------------------
# confusion matrix


def plot_confusion_matrix(
    matrix: np.ndarray,
    path: str | os.PathLike,
    class_names: Sequence[str],
    title: str = "Confusion matrix (test split)",
    normalize: bool = True,
) -> Path:
    """Confusion matrix, rows = reference, columns = predicted.

    Cells are coloured by row share (recall view, comparable across unequal class sizes)
    when ``normalize``, else by raw count; each cell shows the count and the row percentage.
    Reference classes with no pixels get an empty row rather than a division warning.
    """
    cm = np.asarray(matrix, dtype=np.float64)
    names = list(class_names)
    k = len(names)
    if cm.shape != (k, k):
        raise ValueError(f"confusion matrix {cm.shape} does not match {k} classes")
    row_sums = cm.sum(axis=1, keepdims=True)
    share = np.zeros_like(cm)
    np.divide(cm, row_sums, out=share, where=row_sums > 0)
    total = float(cm.sum())
    accuracy = float(np.trace(cm) / total) if total > 0 else float("nan")

    side = float(np.clip(0.55 * k + 3.2, 5.5, 24.0))  # ~0.55 in per cell
    fig = _new_figure(side + 1.2, side)
    ax = fig.add_subplot()
    if normalize:
        values, vmax, cbar_label = share, 1.0, "Share of reference row"
    else:
        values, vmax, cbar_label = cm, max(float(cm.max()) if k else 0.0, 1.0), "Pixels"
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    cbar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.03)
    cbar.set_label(cbar_label)

    _write_cell_labels(ax, cm, share, values, vmax)
    ax.set_xticks(range(k), labels=names, rotation=45 if k > 3 else 0,
                  ha="right" if k > 3 else "center", rotation_mode="anchor")
    ax.set_yticks(range(k), labels=names)
    ax.set_xlabel("Predicted", fontsize=11)
    ax.set_ylabel("Reference", fontsize=11)
    ax.set_xticks(np.arange(-0.5, k, 1), minor=True)
    ax.set_yticks(np.arange(-0.5, k, 1), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.0)
    ax.tick_params(which="minor", length=0)
    fig.suptitle(title, fontsize=13)
    stats = (f"N = {int(total):,} px · overall accuracy {100 * accuracy:.1f} %"
             if total > 0 else "empty matrix")
    ax.set_title(stats, fontsize=9, color="#555555")
    return _save_atomic(fig, path)


def _write_cell_labels(ax: Axes, cm: np.ndarray, share: np.ndarray, values: np.ndarray, vmax: float) -> None:
    """Each cell's count and row percentage, white on dark cells; smaller type as classes grow, and a dash
    for the share of a reference class without pixels."""
    k = cm.shape[0]
    row_sums = cm.sum(axis=1, keepdims=True)
    fontsize = 9.0 if k <= 8 else float(np.clip(7.5 - 0.06 * (k - 8), 6.0, 7.5))
    for i in range(k):
        for j in range(k):
            count = cm[i, j]
            if row_sums[i, 0] > 0:
                text = f"{_format_count(count)}\n{100 * share[i, j]:.1f} %"
            else:
                text = f"{_format_count(count)}\n–"
            dark = values[i, j] > 0.55 * vmax
            colour = "white" if dark else ("#333333" if count else "#aaaaaa")
            ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour,
                    linespacing=1.15)


# --------------------------------------------------------------------------------------------
# ROC curves


def _unit_square_axes(ax, xlabel: str, ylabel: str, title: str, legend_title: str | None = None) -> None:
    """The frame of a curve in [0, 1]²: equal axes, grid, the legend beside the plot."""
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0, fontsize=9, frameon=False,
              title=legend_title, title_fontsize=8)
    ax.set_title(title, fontsize=12)


def plot_roc_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], float | None]],
    path: str | os.PathLike,
    class_colors: Mapping[str, str],
    title: str = "ROC curves, one class vs the rest (test split)",
) -> Path:
    """One ROC curve per class in its class colour, the chance diagonal, AUC in the legend.

    ``curves`` maps a class name to ``(fpr, tpr, auc)``; a class whose AUC is undefined (no
    pixels of it, or only pixels of it) is listed as "n/a" and drawn as no curve, so that the
    legend still accounts for every class.
    """
    fig = _new_figure(6.8, 5.2)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], linestyle=":", color="#888888", linewidth=1.0, label="chance (AUC 0.5)")
    fallback = class_palette(len(curves))
    for i, (name, (fpr, tpr, auc)) in enumerate(curves.items()):
        colour = class_colors.get(name, fallback[i])
        if auc is None:
            ax.plot([], [], color=colour, linewidth=1.8, label=f"{name} (AUC n/a)")
            continue
        ax.plot(np.asarray(fpr, dtype=np.float64), np.asarray(tpr, dtype=np.float64), color=colour,
                linewidth=1.8, label=f"{name} (AUC {auc:.3f})")
    _unit_square_axes(ax, "False positive rate", "True positive rate", title)
    return _save_atomic(fig, path)


def plot_pr_curves(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], float | None]],
    path: str | os.PathLike,
    class_colors: Mapping[str, str],
    prevalence: Mapping[str, float] | None = None,
    title: str = "Precision–recall, one class vs the rest (test split)",
) -> Path:
    """One precision–recall curve per class in its class colour, average precision in the legend.

    ``curves`` maps a class name to ``(recall, precision, ap)``; ``prevalence`` (a class's share
    of the labelled pixels: the AP of a classifier without skill) is drawn as a dotted level.
    A class whose AP is undefined (no pixel of it) is listed as "n/a".
    """
    fig = _new_figure(6.8, 5.2)
    ax = fig.add_subplot()
    fallback = class_palette(len(curves))
    for i, (name, (recall, precision, ap)) in enumerate(curves.items()):
        colour = class_colors.get(name, fallback[i])
        if ap is None:
            ax.plot([], [], color=colour, linewidth=1.8, label=f"{name} (AP n/a)")
            continue
        ax.step(np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64), where="pre",
                color=colour, linewidth=1.8, label=f"{name} (AP {ap:.3f})")
        if prevalence and name in prevalence:
            ax.axhline(prevalence[name], color=colour, linestyle=":", linewidth=1.0)
    _unit_square_axes(ax, "Recall", "Precision", title, "dotted: prevalence (no skill)" if prevalence else None)
    return _save_atomic(fig, path)


ERROR_COLORS = {0: NODATA_COLOR, 1: "#f4f4f4", 2: "#1a9850", 3: "#e66101", 4: "#5e3c99"}  # outside, other,
#   correct (green), omission (orange), commission (purple): distinguishable with the common colour blindnesses


def plot_error_map(
    codes: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    title: str = "Errors per class (test area)",
) -> Path:
    """One panel per class of its error codes (:mod:`deepgeo_runner.report.error_map`): correct,
    omission, commission, agreement on other classes, and no reference (grey); the shares of
    omission (1 − recall) and commission (1 − precision) in each panel's title."""
    names = list(codes)
    if not names:
        raise ValueError("no class to draw")
    height, width = next(iter(codes.values())).shape
    step = _decimation_step(height, width)
    cols = min(3, len(names))
    rows = -(-len(names) // cols)
    w, h = _map_figsize(height, width)
    scale = 1.0 if cols == 1 else 0.55
    fig = _new_figure(w * scale * cols, h * scale * rows + 0.4)
    palette = np.array([to_rgb(ERROR_COLORS[c]) for c in range(5)], dtype=np.float32)
    for i, name in enumerate(names):
        arr = np.asarray(codes[name])
        n = error_counts(arr)
        omission = n["omission"] / max(n["correct"] + n["omission"], 1)
        commission = n["commission"] / max(n["correct"] + n["commission"], 1)
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.imshow(palette[np.clip(arr[::step, ::step], 0, 4)], interpolation="nearest")
        ax.set_title(f"{name}: omission {_format_share(omission)}, commission {_format_share(commission)}",
                     fontsize=9)
        ax.set_axis_off()
    handles = [Patch(facecolor=ERROR_COLORS[c], edgecolor="#666666", linewidth=0.5, label=CODE_NAMES[c])
               for c in (2, 3, 4, 1)]
    handles.append(Patch(facecolor=NODATA_COLOR, edgecolor="#666666", linewidth=0.5, label="no reference"))
    fig.legend(handles=handles, loc="outside lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle(title, fontsize=12)
    return _save_atomic(fig, path)


# --------------------------------------------------------------------------------------------
# training curves


def _is_score(name: str) -> bool:
    lowered = name.lower()
    return "loss" not in lowered and any(token in lowered for token in SCORE_TOKENS)


def _clean_series(points: Sequence[tuple[int, float]]) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) arrays sorted by x, without non-finite values (a NaN loss would break limits)."""
    arr = np.asarray(list(points), dtype=np.float64).reshape(-1, 2)
    arr = arr[np.all(np.isfinite(arr), axis=1)]
    arr = arr[np.argsort(arr[:, 0], kind="stable")]
    return arr[:, 0], arr[:, 1]


def plot_training_curves(
    history: Mapping[str, Sequence[tuple[int, float]]],
    path: str | os.PathLike,
    title: str = "Training curves",
    *,
    x_label: str = "Epoch",
) -> Path:
    """Losses and scores against epoch (or step), in two panels since their scales differ.

    Series whose name holds 'f1', 'acc', 'iou' (and similar) go to the score panel, the rest
    to the loss panel; empty series are skipped, and with nothing to draw the PNG says so
    instead of failing, so the report never lacks the file.
    """
    groups: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {"loss": [], "score": []}
    for name, points in history.items():
        x, y = _clean_series(points)
        if x.size:
            groups["score" if _is_score(name) else "loss"].append((name, x, y))
    panels = [(key, series) for key, series in groups.items() if series]

    if not panels:
        fig = _new_figure(6.0, 3.0)
        ax = fig.add_subplot()
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no training history", ha="center", va="center", fontsize=13,
                color="#555555", transform=ax.transAxes)
        fig.suptitle(title, fontsize=13)
        return _save_atomic(fig, path)

    fig = _new_figure(5.6 * len(panels), 4.3)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (key, series) in zip(axes, panels, strict=True):
        for name, x, y in series:
            marker = "o" if x.size <= 30 else None
            style = "--" if name.lower().startswith("train") else "-"
            ax.plot(x, y, linestyle=style, marker=marker, markersize=3.5, linewidth=1.6,
                    label=name)
        all_x = np.concatenate([x for _, x, _ in series])
        all_y = np.concatenate([y for _, _, y in series])
        if np.all(all_x == np.round(all_x)):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if key == "score":
            ax.set_ylabel("Score")
            ax.set_title("Scores", fontsize=11)
            if all_y.min() >= 0.0 and all_y.max() <= 1.0:
                ax.set_ylim(0.0, 1.02)
        else:
            ax.set_ylabel("Loss")
            ax.set_title("Losses", fontsize=11)
            positive = all_y[all_y > 0]
            if positive.size == all_y.size and positive.max() / positive.min() > 100:
                ax.set_yscale("log")
        ax.set_xlabel(x_label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, frameon=False, loc="best")
    fig.suptitle(title, fontsize=13)
    return _save_atomic(fig, path)


# --------------------------------------------------------------------------------------------
# chips: where they are, and what they hold

SPLIT_COLORS = {"train": "#1f78b4", "val": "#ff7f00", "test": "#e31a1c"}
MAX_OUTLINED_CHIPS = 2000  # beyond this the outlines cost more to draw than they show


def plot_chip_map(
    bands: np.ndarray | None,
    shape: tuple[int, int],
    chips: Sequence[Mapping],
    path: str | os.PathLike,
    valid: np.ndarray | None = None,
    title: str = "Chips by split",
) -> Path:
    """Chip footprints over the scene, coloured by split: the spatial layout of the split at a
    glance (a test chip inside the training area would show here before it showed in a score).

    Args:
        bands: (3, h, w) R, G, B at any decimation of the scene, or None for a blank frame.
        shape: (H, W) of the full-resolution scene the chips' ``row``/``col``/``size`` refer to.
        chips: records with ``row``, ``col``, ``size`` and ``split`` (``chips.json``).
        valid: optional (h, w) mask of usable pixels, as for :func:`plot_composite`.
    """
    from matplotlib.patches import Rectangle

    height, width = shape
    fig = _new_figure(*_map_figsize(height, width, extra_width=1.6))
    ax = fig.add_subplot()
    if bands is not None:
        bands = np.asarray(bands)
        step = _decimation_step(*bands.shape[1:])
        rgb, _ = _stretched_rgb(bands[:, ::step, ::step], None if valid is None else valid[::step, ::step], (2, 98))
        ax.imshow(rgb * 0.6 + 0.4, extent=(0, width, height, 0), interpolation="antialiased")  # faded
    else:
        ax.set_facecolor("#f4f4f4")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    # the ground each split covers, as one overlay (hundreds of overlapping random chips would
    # otherwise stack their transparency into an opaque blot); val/test chips also get outlines
    scale = min(1.0, MAX_DISPLAY_PX / 2 / max(height, width))
    cover = np.full((max(1, math.ceil(height * scale)), max(1, math.ceil(width * scale))), -1, dtype=np.int16)
    order = list(SPLIT_COLORS) + sorted({str(c["split"]) for c in chips} - set(SPLIT_COLORS))
    counts: dict[str, int] = {}
    for rank, split in enumerate(order):  # later splits drawn over earlier ones: test on top
        for chip in (c for c in chips if str(c["split"]) == split):
            counts[split] = counts.get(split, 0) + 1
            r0, c0 = int(chip["row"] * scale), int(chip["col"] * scale)
            r1 = max(r0 + 1, int(math.ceil((chip["row"] + chip["size"]) * scale)))
            c1 = max(c0 + 1, int(math.ceil((chip["col"] + chip["size"]) * scale)))
            cover[max(r0, 0):r1, max(c0, 0):c1] = rank
            if split != "train" and len(chips) <= MAX_OUTLINED_CHIPS:
                ax.add_patch(Rectangle((chip["col"], chip["row"]), chip["size"], chip["size"], fill=False,
                                       edgecolor=SPLIT_COLORS.get(split, UNKNOWN_COLOR), linewidth=0.5))
    overlay = np.zeros(cover.shape + (4,), dtype=np.float64)
    for rank, split in enumerate(order):
        overlay[cover == rank] = (*to_rgb(SPLIT_COLORS.get(split, UNKNOWN_COLOR)), 0.4)
    ax.imshow(overlay, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_title(title, fontsize=12)
    ax.set_axis_off()
    handles = [Patch(facecolor=SPLIT_COLORS.get(s, UNKNOWN_COLOR), alpha=0.6, label=f"{s} ({_format_count(n)})")
               for s, n in sorted(counts.items(), key=lambda kv: list(SPLIT_COLORS).index(kv[0])
                                  if kv[0] in SPLIT_COLORS else 99)]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0, fontsize=9,
                  frameon=False, title="chips")
    return _save_atomic(fig, path)


def plot_class_distribution(
    counts: Mapping[str, Sequence[int]],
    class_names: Sequence[str],
    path: str | os.PathLike,
    title: str = "Labelled pixels per class and split (in chips; overlaps counted per chip)",
) -> Path:
    """Grouped bars of labelled pixels per class in each split (log scale): a class missing from
    a split, or a strong imbalance, explains scores before anyone reads them."""
    splits = [s for s in SPLIT_COLORS if s in counts] + [s for s in counts if s not in SPLIT_COLORS]
    k = len(class_names)
    fig = _new_figure(max(5.0, 1.2 + 0.9 * k), 3.6)
    ax = fig.add_subplot()
    x = np.arange(k)
    width = 0.8 / max(len(splits), 1)
    for i, split in enumerate(splits):
        values = np.asarray(counts[split][:k], dtype=np.float64)
        ax.bar(x + (i - (len(splits) - 1) / 2) * width, np.where(values > 0, values, np.nan), width,
               label=split, color=SPLIT_COLORS.get(split, "#888888"), edgecolor="white", linewidth=0.5)
        for xi, v in zip(x, values, strict=True):
            if v == 0:  # absent from this split: say so, a missing bar is easy to overlook
                ax.text(xi + (i - (len(splits) - 1) / 2) * width, 0.01, "0", ha="center", va="bottom",
                        fontsize=7, color="#b00020", transform=ax.get_xaxis_transform())
    ax.set_yscale("log")
    ax.set_xticks(x, list(class_names), rotation=30 if k > 5 else 0, ha="right" if k > 5 else "center")
    ax.set_ylabel("labelled pixels")
    ax.set_title(title, fontsize=12)
    ax.legend(fontsize=9, frameon=False)
    ax.grid(axis="y", alpha=0.3)
    return _save_atomic(fig, path)


def plot_feature_histograms(
    features: Mapping[str, np.ndarray],
    labels: np.ndarray,
    class_ids: Sequence[int],
    class_names: Sequence[str],
    class_colors: Sequence[str],
    path: str | os.PathLike,
    bins: int = 60,
    title: str = "Prepared (normalized) feature values per class, labelled pixels",
) -> Path:
    """One panel per feature: the distribution of its values in each class, as density outlines.
    Classes that overlap in every panel are the ones the model will confuse.

    Args:
        features: name → (H, W) values (NaN where invalid), e.g. NDVI and the red band.
        labels: (H, W) class ids on the same grid; pixels of other ids are not drawn.
    """
    n = len(features)
    if not n:
        raise ValueError("no features to plot")
    cols = min(n, 3)
    rows = max(1, math.ceil(n / cols))
    fig = _new_figure(3.4 * cols + 1.4, 2.6 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax, (name, values) in zip(axes.flat, features.items(), strict=False):
        values = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(values)
        in_classes = finite & np.isin(labels, class_ids)
        if not in_classes.any():
            ax.set_axis_off()
            continue
        lo, hi = np.percentile(values[in_classes], [0.5, 99.5])
        edges = np.linspace(lo, hi if hi > lo else lo + 1, bins + 1)
        for cid, cname, color in zip(class_ids, class_names, class_colors, strict=True):
            sample = values[finite & (labels == cid)]
            if sample.size:
                ax.hist(np.clip(sample, edges[0], edges[-1]), bins=edges, density=True, histtype="step",
                        linewidth=1.4, color=color, label=cname)
        ax.set_title(name, fontsize=10)
        ax.set_yticks([])
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[n:]:
        ax.set_axis_off()
    handles = [Patch(facecolor="none", edgecolor=c, label=nm) for nm, c in zip(class_names, class_colors, strict=True)]
    fig.legend(handles=handles, loc="outside right upper", fontsize=9, frameon=False)
    fig.suptitle(title, fontsize=12)
    return _save_atomic(fig, path)
