"""How the training labels cover the scene: wall to wall, or sparse polygons drawn inside classes.

Analysts label interiors: their polygons of different classes never touch, so a network never sees
a labelled pixel of one class beside a labelled pixel of another and may learn "near a clearing"
from context instead of the pixel's own spectra (the halo of issue 20). Whether that is so is read
from the labels themselves, with no tuning to a scene:

* ``contact``: of the labelled pixels on the edge of a labelled region (a 4-neighbour inside the
  image's valid area differs from them), the share whose differing neighbour is another class.
  Wall-to-wall labels: near 1 (edges are class borders). Sparse polygons: near 0 (edges face
  unlabelled ground).
* ``labelled_share``: labelled pixels / valid pixels.

Numpy only: nothing here knows of Hydra, Lightning or torch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

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


__all__ = ["LabelLayout", "label_layout", "SPARSE_CONTACT"]


def raster_label_layout(labels_path, lut: np.ndarray, nodata: int = 255) -> LabelLayout:
    """:func:`label_layout` of a label raster of class ids (``nodata``: no image data there), read
    through ``lut`` (label ids → model targets, ``IGNORE`` for unlabelled ids)."""
    import rasterio

    with rasterio.open(labels_path) as src:
        ids = src.read(1)
    return label_layout(lut[ids], ids != nodata)
