"""How the training labels cover the scene: wall to wall, or sparse polygons drawn inside classes.

Analysts label interiors: their polygons of different classes never touch, so a network never sees
a labelled pixel of one class beside a labelled pixel of another and may learn "near a clearing"
from context instead of the pixel's own spectra (the halo of issue 20). Whether that is so is read
from the labels themselves, with no tuning to a scene:

* ``contact``: of the labelled pixels on the edge of a labelled region (a 4-neighbour inside the
  image's valid area differs from them), the share whose differing neighbour is another class.
  Wall-to-wall labels: near 1 (edges are class borders). Sparse polygons: near 0 (edges face
  unlabelled ground).
* ``labelled_share``: labelled pixels / valid pixels; :func:`label_coverage` adds the share of each
  class and how far labelled pixels lie from the nearest label of another class (0-1 px wall to wall,
  the width of the unlabelled gaps between sparse polygons).

Numpy (and scipy's distance transform): nothing here knows of Hydra, Lightning or torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.ndimage import distance_transform_edt

IGNORE = 255
SPARSE_CONTACT = 0.5  # below it, most label edges face unlabelled ground: sparse labels


@dataclass(frozen=True)
class LabelLayout:
    labelled_share: float  # labelled / valid pixels
    contact: float  # share of label-edge pixels whose neighbour across the edge is another class
    edge_pixels: int  # label-edge pixels counted

    @property
    def sparse(self) -> bool:
        """Labels that leave unlabelled ground between classes (their edges mostly face no label)."""
        return self.edge_pixels > 0 and self.contact < SPARSE_CONTACT

    def to_dict(self) -> dict:
        return {**asdict(self), "sparse": self.sparse}


def label_layout(targets: np.ndarray, valid: np.ndarray | None = None) -> LabelLayout:
    """Measure ``targets`` (H, W) model targets, ``IGNORE`` where unlabelled or without data.

    ``valid``: the image's valid pixels (default: all); an edge against nodata counts as neither.
    """
    targets = np.asarray(targets)
    valid = np.ones(targets.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    labelled = (targets != IGNORE) & valid
    edge_other = np.zeros(targets.shape, dtype=bool)  # touches another class
    edge_any = np.zeros(targets.shape, dtype=bool)  # touches another class or unlabelled valid ground
    for axis in (0, 1):
        for step in (1, -1):
            a = [slice(None), slice(None)]
            b = [slice(None), slice(None)]
            a[axis], b[axis] = (slice(0, -1), slice(1, None)) if step == 1 else (slice(1, None), slice(0, -1))
            ta, tb = targets[tuple(a)], targets[tuple(b)]
            la, vb = labelled[tuple(a)], valid[tuple(b)]
            lb = labelled[tuple(b)]
            other = la & lb & (ta != tb)
            edge_other[tuple(a)] |= other
            edge_any[tuple(a)] |= other | (la & vb & ~lb)
    n_valid = int(valid.sum())
    n_edge = int(edge_any.sum())
    return LabelLayout(
        labelled_share=float(labelled.sum() / n_valid) if n_valid else 0.0,
        contact=float(edge_other.sum() / n_edge) if n_edge else 1.0,
        edge_pixels=n_edge,
    )


__all__ = ["LabelLayout", "LabelCoverage", "label_layout", "label_coverage", "SPARSE_CONTACT"]

COVERAGE_EXACT_MAX_PX = 4_000_000  # larger scenes measure distances on a strided grid (px scaled back)
DISTANCE_PERCENTILES = (10, 50, 90)


@dataclass(frozen=True)
class LabelCoverage:
    """How the labels cover the scene: the layout, each class's share of the valid pixels, and the
    distance (px) from labelled pixels to the nearest label of another class."""

    layout: LabelLayout
    valid_pixels: int
    labelled_pixels: int
    class_pixels: dict[str, int]
    distance_px: dict[str, float] | None  # p10/median/p90 over labelled pixels; None: one class labelled
    distance_step: int = 1  # >1: measured on every step-th row and column (a large scene)

    @property
    def coverage(self) -> float:
        return self.labelled_pixels / self.valid_pixels if self.valid_pixels else 0.0

    @property
    def wall_to_wall(self) -> bool:
        """Labels whose edges are class borders (not sparse): test scores then reach the map's borders."""
        return not self.layout.sparse

    def to_dict(self) -> dict:
        """The ``labels`` entry of ``data_report.json``."""
        n = self.valid_pixels
        return {
            "coverage": self.coverage,
            "coverage_per_class": {k: (v / n if n else 0.0) for k, v in self.class_pixels.items()},
            "wall_to_wall": self.wall_to_wall,
            "valid_pixels": n,
            "labelled_pixels": self.labelled_pixels,
            "contact": self.layout.contact,
            "edge_pixels": self.layout.edge_pixels,
            "distance_to_other_class_px": self.distance_px,
            **({"distance_step_px": self.distance_step} if self.distance_step > 1 else {}),
        }


def label_coverage(targets: np.ndarray, class_names: list[str] | tuple[str, ...],
                   valid: np.ndarray | None = None, max_px: int = COVERAGE_EXACT_MAX_PX) -> LabelCoverage:
    """:func:`label_layout` plus per-class coverage and the distance to the nearest other-class label.

    ``targets``: (H, W) model targets 0..K-1 (``class_names[k]`` names target k), ``IGNORE`` where
    unlabelled. Distances are Euclidean, in pixels, from each labelled pixel to the nearest labelled
    pixel of another class (wall to wall: 1 at a border); on scenes over ``max_px`` pixels they are
    measured on a strided grid and scaled back (``distance_step``).
    """
    targets = np.asarray(targets)
    valid = np.ones(targets.shape, dtype=bool) if valid is None else np.asarray(valid, dtype=bool)
    labelled = (targets != IGNORE) & valid
    counts = np.bincount(targets[labelled].ravel(), minlength=len(class_names))
    class_pixels = {name: int(counts[k]) for k, name in enumerate(class_names)}
    step = 1
    while targets.size / step**2 > max_px:
        step *= 2
    small, small_labelled = targets[::step, ::step], labelled[::step, ::step]
    present = [k for k in range(len(class_names)) if counts[k]]
    distances = []
    if len(present) > 1:
        for k in present:
            own = small_labelled & (small == k)
            other = small_labelled & (small != k)
            if own.any() and other.any():
                distances.append(distance_transform_edt(~other)[own] * step)
    distance = None
    if distances:
        values = np.percentile(np.concatenate(distances), DISTANCE_PERCENTILES)
        distance = {("median" if q == 50 else f"p{q}"): round(float(v), 2)
                    for q, v in zip(DISTANCE_PERCENTILES, values, strict=True)}
    return LabelCoverage(label_layout(targets, valid), int(valid.sum()), int(labelled.sum()), class_pixels,
                         distance, step)


def raster_label_layout(labels_path, lut: np.ndarray, nodata: int = 255,
                        valid: np.ndarray | None = None) -> LabelLayout:
    """:func:`label_layout` of a label raster of class ids, read through ``lut`` (label ids → model
    targets, ``IGNORE`` for unlabelled ids). ``valid``: the image's valid pixels; without it, every
    pixel but the label raster's ``nodata``. Give it where labels come from a raster whose own nodata
    marks unlabelled ground (a sparse label raster with nodata 0): its nodata then is not "no image"."""
    import rasterio

    with rasterio.open(labels_path) as src:
        ids = src.read(1)
    if valid is None or valid.shape != ids.shape:
        valid = ids != nodata
    return label_layout(lut[ids], valid)
