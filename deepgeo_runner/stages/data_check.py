"""Stage ``check``: what the data really gives each split, said before any heavy stage runs.

Every decision the tool takes silently on the user's data is written here, into the run's
``data_report.json`` and a short printed table: how many labelled pixels of each class each
split gets (and how many the buffer takes), how much of the image is nodata and by which
rule, which inputs were reprojected, label raster values that are no class, inputs that do
not look like reflectance while indices need it, and classes missing from a split. A class
with no training pixel stops the run here, before hours of training that could not learn it.

How the labels cover the scene is measured too (``labels``: labelled / valid pixels, per class,
whether they are wall to wall, how far labelled pixels lie from another class's label): sparse
polygons drawn inside classes make test-split scores describe the polygons, not the map between
them, and the report says so and how to measure the map (issue 20).

Plain numpy/rasterio: no Hydra, no torch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling

from deepgeo_runner.core.atomic import write_text_atomic
from deepgeo_runner.core.errors import StageError
from deepgeo_runner.geo.chips import (
    NO_SPLIT,
    SPLITS,
    cell_class_counts,
    reachable_by_chips,
    usable_area,
    whole_cells,
)
from deepgeo_runner.geo.dealing import class_lut
from deepgeo_runner.geo.label_layout import IGNORE, LabelCoverage, label_coverage
from deepgeo_runner.geo.raster_io import NodataValue, iter_windows, mask_source, read_valid
from deepgeo_runner.geo.rasterize import NODATA, RASTER_SUFFIXES
from deepgeo_runner.stages.prepare import per_band_values

log = logging.getLogger(__name__)

REPORT_NAME = "data_report.json"
REACH_EXACT_MAX_PX = 4_000_000  # larger scenes estimate the chip-reachable area on a decimated grid
REFLECTANCE_MAX = 1.5  # a 99th percentile above this is not surface reflectance


@dataclass
class DataReport:
    """The data check's findings, as written to ``data_report.json``."""

    splits: dict[str, dict[str, Any]]
    nodata: dict[str, Any]
    inputs: list[dict[str, Any]]
    warnings: list[str] = field(default_factory=list)
    labelled: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # why training cannot start (a class no training chip reaches)
    input: dict[str, Any] | None = None  # the image's profile (bands, dtype, percentiles)
    labels: dict[str, Any] = field(default_factory=dict)  # how the labels cover the scene (LabelCoverage.to_dict)

    def raise_if_blocking(self) -> None:
        """Stop the run (after the report is written, so the user can read it)."""
        if self.error:
            raise StageError(self.error)

    def to_dict(self) -> dict[str, Any]:
        return {"splits": self.splits, "nodata": self.nodata, "inputs": self.inputs,
                "labelled": self.labelled, "input": self.input, "warnings": self.warnings, "error": self.error,
                "labels": self.labels}

    def write(self, run_dir: str | Path) -> Path:
        path = Path(run_dir) / REPORT_NAME
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2))
        return path

    def table(self) -> str:
        """The few lines a user reads before training starts."""
        names = list(self.splits["train"]["class_pixels"])
        cols = [s for s in (*SPLITS, "buffer", "unreachable") if s in self.splits]
        width = max([len(n) for n in names] + [5])
        lines = [f"{'class':<{width}} " + " ".join(f"{c:>9}" for c in cols)]
        for name in names:
            lines.append(f"{name:<{width}} " + " ".join(
                f"{self.splits[c]['class_pixels'].get(name, 0) if not self.splits[c].get('external') else '(scene)':>9}"
                for c in cols))
        if self.labelled.get("split_method"):
            lines.insert(0, f"split: {self.labelled['split_method']}")
        shares = self.labelled.get("share", {})
        lines.append("share of labelled pixels: " + ", ".join(f"{k} {100 * v:.1f} %" for k, v in shares.items()))
        if self.labels:
            lines.append(coverage_line(self.labels))
        lines.append(f"nodata: {100 * self.nodata['fraction']:.1f} % of the image ({self.nodata['rule']} rule; "
                     f"{self.nodata['source']})")
        lines += [f"WARNING: {w}" for w in self.warnings]
        if self.error:
            lines.append(f"ERROR: {self.error}")
        return "\n".join(lines)


def nodata_summary(image: str | Path, nodata: NodataValue, rule: str, window: int = 2048,
                   dates: int = 1, valid_out: np.ndarray | None = None) -> dict[str, Any]:
    """Share of the image's pixels that are nodata, by the same rule the prepare stage uses;
    ``valid_out`` (a bool array of the image's shape), when given, receives the valid mask."""
    with rasterio.open(image) as src:
        invalid = 0
        keep = valid_out is not None and valid_out.shape == (src.height, src.width)
        for win in iter_windows(src.height, src.width, window):
            data = src.read(window=win)
            valid = read_valid(src, data, win, nodata, rule, dates=dates)
            invalid += int((~valid).sum())
            if keep:
                valid_out[win.row_off:win.row_off + win.height, win.col_off:win.col_off + win.width] = valid
        total = src.width * src.height
        return {"fraction": invalid / max(total, 1), "pixels": invalid, "rule": rule,
                "source": mask_source(src, nodata, rule)}


def split_class_pixels(
    labels: np.ndarray, class_ids: Sequence[int], split_map: np.ndarray, buffer: int, chip_size: int,
    eval_stride: int | None = None, min_labelled_fraction: float = 0.0,
) -> dict[str, np.ndarray]:
    """Labelled pixels per class that the chips of each split can reach; ``buffer``: those of
    training blocks no chip can reach (the buffer, slivers narrower than a chip); ``unreachable``:
    those of val/test blocks no chip fits (edge blocks narrower than a chip).

    Large scenes are judged on whole cells of a coarse grid with exact class counts per cell
    (a thin river or a few small patches are never sampled away), the chip rounded up: a class
    is never reported reachable where chips cannot go.
    """
    step = 1
    while labels.size / step**2 > REACH_EXACT_MAX_PX:
        step *= 2
    cells = cell_class_counts(labels, class_ids, step)
    lut = class_lut(class_ids)

    def count(where: np.ndarray) -> np.ndarray:
        return np.bincount(lut[labels[where]], minlength=len(class_ids) + 1)[:-1]

    labelled, need = cells.sum(axis=-1), int(np.ceil(min_labelled_fraction * chip_size * chip_size))
    out: dict[str, np.ndarray] = {}
    for split_id, split in enumerate(SPLITS):
        in_split = count(split_map == split_id)
        stride = 1 if split == "train" else max(1, round((eval_stride or chip_size) / step))  # val/test: a grid
        reach = reachable_by_chips(whole_cells(usable_area(split_map, split_id, buffer), step), -(-chip_size // step),
                                   stride, labelled, need)
        out[split] = np.minimum(cells[reach].sum(axis=0), in_split)
        key = "buffer" if split == "train" else "unreachable"
        out[key] = out.get(key, np.zeros_like(in_split)) + in_split - out[split]
    out["none"] = count(split_map == NO_SPLIT)
    return out


def label_raster_strays(
    path: str | Path, value_sets: Sequence[Sequence[Any]], max_px: int = 4_000_000,
) -> dict[float, int]:
    """Values of a label raster that are neither a class value nor the file's nodata, with counts
    (read decimated on large rasters: the counts are then scaled estimates)."""
    with rasterio.open(path) as src:
        factor = max(1, int(np.ceil(np.sqrt(src.width * src.height / max_px))))
        shape = (max(1, src.height // factor), max(1, src.width // factor))
        data = src.read(1, out_shape=shape, resampling=Resampling.nearest)
        nodata = src.nodata
    known = {float(v) for vs in value_sets for v in vs if _is_number(v)}
    values, counts = np.unique(data[np.isfinite(data)] if data.dtype.kind == "f" else data, return_counts=True)
    return {float(v): int(c) * factor * factor for v, c in zip(values, counts, strict=True)
            if float(v) not in known and (nodata is None or float(v) != float(nodata))}


def _is_number(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


NOT_REFLECTANCE = ("thermal", "tir", "tirs1", "tirs2", "bt")  # band roles measured in kelvin, not reflectance


def reflectance_warning(
    sample: tuple[np.ndarray, np.ndarray, str], indices: Sequence[str], scale: Any, offset: Any,
    band_names: Sequence[str] = (), dates: int = 1,
) -> str | None:
    """A warning when indices are asked of values that do not look like surface reflectance.

    ``sample`` is the image's :func:`~deepgeo_runner.geo.raster_io.read_sample`;
    ``scale``/``offset`` and ``band_names`` describe the bands of one date (repeated for each
    date of a stack); thermal bands are left out of the judgement.
    """
    if not indices:
        return None
    data, valid, dtype = sample
    dates = max(dates, 1)
    per_date = data.shape[0] // dates
    scale_v = np.tile(per_band_values(scale, per_date, "data.scale", 1.0), dates).astype(np.float64)
    offset_v = np.tile(per_band_values(offset, per_date, "data.offset", 0.0), dates).astype(np.float64)
    names = list(band_names) * dates if len(band_names) == per_date else [""] * data.shape[0]
    keep = np.array([name.lower() not in NOT_REFLECTANCE for name in names])
    values = data[keep][:, valid].astype(np.float64) * scale_v[keep, None] + offset_v[keep, None]
    if values.size == 0:
        return None
    high = float(np.percentile(values, 99))
    if high <= REFLECTANCE_MAX:
        return None
    return (f"indices {list(indices)} assume surface reflectance (0-1), but the image's values reach {high:g} "
            f"(99th percentile, dtype {dtype}{', after data.scale/offset' if scale is not None else ''}): "
            "set data.scale/data.offset to convert digital numbers, or drop preprocessing.indices for "
            "contrast-stretched imagery (ratios such as NDVI survive a linear stretch, EVI2 and others do not).")


@dataclass(frozen=True)
class LabelGrid:
    """The label raster's class ids on the scene's grid, with the classes they stand for.

    ``valid``: the image's valid pixels (default: every pixel whose label is not nodata), the
    denominator of the labels' coverage."""

    labels: np.ndarray
    class_names: Sequence[str]
    class_ids: Sequence[int]
    valid: np.ndarray | None = None


@dataclass(frozen=True)
class SplitLayout:
    """How the scene is cut into splits and chips: what decides which labelled pixel a split's chips reach.
    ``external_splits``: splits taken from another scene (counted there, only marked here)."""

    split_map: np.ndarray
    buffer: int
    chip_size: int
    split_method: str = "blocks"
    eval_stride: int | None = None
    min_labelled_fraction: float = 0.0
    external_splits: Sequence[str] = ()


def check_data(
    grid: LabelGrid,
    layout: SplitLayout,
    *,
    nodata: dict[str, Any],
    inputs: list[dict[str, Any]],
    warnings: Sequence[str] = (),
    allow_missing_classes: bool = False,
    image: str | Path | None = None,
    map_assessment: str | None = None,
) -> DataReport:
    """Count what each split gets and turn every gap into a warning (or, for training, an error).

    A class no training chip can reach (or with no labelled pixel at all) sets ``error``
    (see :meth:`DataReport.raise_if_blocking`), unless ``allow_missing_classes`` makes it a warning.
    ``map_assessment``: how this run measures its map (e.g. ``"assess.reference=demo"``), or None,
    said in the warning on sparse labels.
    """
    class_names, external_splits = grid.class_names, layout.external_splits
    counts = split_class_pixels(grid.labels, grid.class_ids, layout.split_map, layout.buffer, layout.chip_size,
                                layout.eval_stride, layout.min_labelled_fraction)
    total = sum(int(v.sum()) for v in counts.values())
    splits = _split_entries(counts, class_names, external_splits)
    shares = {s: int(counts[s].sum()) / max(total, 1) for s in counts if counts[s].sum() or s in SPLITS}
    report = DataReport(splits, nodata, inputs, list(warnings), {"pixels": total, "share": shares,
                        "split_method": layout.split_method, "buffer_px": layout.buffer})
    coverage = labels_coverage(grid.labels, class_names, grid.class_ids, grid.valid)
    report.labels = coverage.to_dict()
    sparse = sparse_labels_warning(coverage, map_assessment)
    if sparse:
        report.warnings.append(sparse)
    report.warnings += _absent_class_warnings(counts, class_names, external_splits)
    missing = [n for n, c in zip(class_names, counts["train"], strict=True) if c == 0]
    cause = _whole_image_fault(grid.labels.shape, layout.chip_size, nodata, image)
    if cause:  # the real reason no class reaches training: not the labels
        report.error = cause
    elif missing:
        detail = "; ".join(
            f"'{n}': " + ", ".join(f"{s} {int(counts[s][i])}" for s in ("train", "val", "test", "buffer"))
            for i, n in enumerate(class_names) if n in missing)
        message = (f"classes {missing} have no labelled pixel that a training chip can reach ({detail} px). "
                   "Fixes: label more of them; lower data.split_buffer or data.chip_size; change data.seed or "
                   "data.block_size; draw the splits (data.split_vector); drop them from data.classes; or "
                   "set data.allow_missing_classes=true to train without them.")
        if allow_missing_classes:
            report.warnings.append(message)
        else:
            report.error = message
    return report


def _split_entries(counts: dict[str, np.ndarray], class_names: Sequence[str],
                   external_splits: Sequence[str]) -> dict[str, dict[str, Any]]:
    """The class pixels of each split for the report; a split from another scene is only marked external
    (its pixels are counted on that scene), and pixels of no split are listed only when there are some."""
    splits: dict[str, dict[str, Any]] = {}
    for split in (*SPLITS, "buffer", "unreachable"):
        entry: dict[str, Any] = {"class_pixels": {n: int(c) for n, c in zip(class_names, counts[split], strict=True)}}
        if split in external_splits:
            entry = {"class_pixels": {}, "external": True}
        splits[split] = entry
    if counts["none"].sum():
        splits["none"] = {"class_pixels": {n: int(c) for n, c in zip(class_names, counts["none"], strict=True)}}
    return splits


def _absent_class_warnings(counts: dict[str, np.ndarray], class_names: Sequence[str],
                           external_splits: Sequence[str]) -> list[str]:
    """A warning for each of val and test that misses a class that training has: its scores will be null."""
    warnings = []
    for split in ("val", "test"):
        if split in external_splits:
            continue
        absent = [n for n, c, t in zip(class_names, counts[split], counts["train"], strict=True) if c == 0 and t > 0]
        if absent:
            warnings.append(f"classes {absent} have no {split} pixel: their {split} scores will be null "
                            f"(more labels of them, or data.split_fractions with a larger {split} share).")
    return warnings


def labels_coverage(labels: np.ndarray, class_names: Sequence[str], class_ids: Sequence[int],
                    valid: np.ndarray | None = None) -> LabelCoverage:
    """How the label raster's class ids (``labels``, 255 nodata) cover the scene's valid pixels."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    lut[np.asarray(class_ids, dtype=np.int64)] = np.arange(len(class_ids))
    if valid is None or valid.shape != labels.shape:
        valid = labels != NODATA  # the label raster's nodata: no image data (or an ignored class)
    return label_coverage(lut[labels], list(class_names), valid)


def coverage_line(labels: Mapping[str, Any]) -> str:
    """One line of the data check's table: how much of the scene the labels cover, and how."""
    per_class = ", ".join(f"{k} {100 * v:.1f} %" for k, v in labels.get("coverage_per_class", {}).items())
    distance = labels.get("distance_to_other_class_px")
    gap = f"; a median {distance['median']:.1f} px to another class's label" if distance else ""
    kind = "wall to wall" if labels.get("wall_to_wall") else "sparse"
    return f"labels cover {100 * labels['coverage']:.1f} % of the valid pixels ({per_class}): {kind}{gap}"


def sparse_labels_warning(coverage: LabelCoverage, map_assessment: str | None = None) -> str | None:
    """What sparse labels mean for the scores (None for wall-to-wall labels): the test split then
    scores the polygons' interiors, never the class borders the map has to draw between them."""
    if coverage.wall_to_wall:
        return None
    distance = coverage.distance_px
    gap = f", a median {distance['median']:.1f} px from the nearest label of another class" if distance else ""
    how = (f"This run measures the map: {map_assessment} (assessment.json)." if map_assessment else
           "Measure the map with assess.reference=REF (a wall-to-wall reference layer, vector or label raster, "
           "independent of the training polygons) or assess.sample=SAMPLE.gpkg (the assess stage designs a "
           "stratified sample, assessment_sample.gpkg, for you to label).")
    return (f"the labels are sparse: they cover {100 * coverage.coverage:.1f} % of the valid pixels and "
            f"{100 * (1 - coverage.layout.contact):.0f} % of their edges face unlabelled ground{gap}. Test-split "
            "scores describe the labelled polygons, not the map between them (class borders are never tested). "
            + how)


def _whole_image_fault(shape: tuple[int, ...], chip_size: int, nodata: Mapping[str, Any],
                       image: str | Path | None) -> str | None:
    """What makes the image itself unusable (all nodata, smaller than a chip), said as such:
    otherwise it reads as classes that need more labels."""
    name = f"image '{image}'" if image is not None else "the image"
    height, width = shape[-2:]
    if nodata.get("fraction", 0.0) >= 1.0:
        return (f"{name} is 100 % nodata ({nodata.get('rule')} rule; {nodata.get('source')}): no pixel can be "
                "labelled or chipped. Check that the file holds data (gdalinfo -stats), and that data.nodata and "
                "data.nodata_rule describe its fill value and mask (a declared nodata value equal to real data "
                "masks everything).")
    if min(height, width) < chip_size:
        return (f"{name} is {width}x{height} px, smaller than data.chip_size={chip_size}: no chip fits in it. "
                f"Lower data.chip_size to at most {min(height, width)}, or give a larger image (data.bbox or "
                "data.aoi may have cropped it).")
    return None


def input_record(path: str | Path, crs: Any, target_crs: Any, role: str) -> dict[str, Any]:
    """One ``inputs`` entry: the file, its CRS and, when it differs from the grid's, where it went."""
    crs_text = crs.to_string() if hasattr(crs, "to_string") else (str(crs) if crs else None)
    target = target_crs.to_string() if hasattr(target_crs, "to_string") else str(target_crs)
    same = crs is not None and _same_crs(crs, target_crs)
    return {"role": role, "path": str(path), "crs": crs_text, "reprojected_to": None if same else target}


def _same_crs(a: Any, b: Any) -> bool:
    from rasterio.crs import CRS

    try:
        return CRS.from_user_input(a) == CRS.from_user_input(b)
    except Exception:  # an unparsable CRS is reported as different rather than hidden
        return False


def vector_crs(path: str | Path) -> Any:
    """The CRS of a vector file without reading its features, or a label raster's CRS."""
    if Path(path).suffix.lower() in RASTER_SUFFIXES:
        with rasterio.open(path) as src:
            return src.crs
    import pyogrio

    return pyogrio.read_info(path).get("crs")


def reprojection_warnings(inputs: Sequence[Mapping[str, Any]]) -> list[str]:
    return [f"{r['role']} '{r['path']}' ({r['crs']}) was reprojected to {r['reprojected_to']}."
            for r in inputs if r.get("reprojected_to")]
