"""Stage ``chips``: cut the prepared stack and labels into a chip store on disk.

Layout of a store directory: ``{split}_image.npy`` (N, C, s, s) float32 and
``{split}_mask.npy`` (N, s, s) uint8 model targets (255 = ignore), ``chips.json`` (the
windows, the scene each was cut from and class histograms) and ``chips.gpkg`` (the chip
footprints, for GIS). With an ignore ring (``ChipPlan.ignore_ring``, the field's protocol) the
masks have the ring ignored (the loss and the protocol's scores use them), and val/test also keep
``{split}_plain_mask.npy``, every labelled pixel (the plain test scores).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from affine import Affine
from rasterio.crs import CRS
from shapely.geometry import box

from deepgeo_runner.core.atomic import write_text_atomic
from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.boundary import ignore_borders
from deepgeo_runner.geo.chips import (
    SPLITS,
    Window,
    check_no_leakage,
    class_balanced_windows,
    grid_windows,
    point_windows,
    random_windows,
    require_chips,
    usable_area,
)
from deepgeo_runner.geo.choices import ChipStrategy
from deepgeo_runner.geo.normalize import standardize_chips
from deepgeo_runner.geo.raster_io import valid_mask

log = logging.getLogger(__name__)

IGNORE = 255


STRATEGIES = tuple(s.value for s in ChipStrategy)


@dataclass(frozen=True)
class ChipPlan:
    """How chips are cut: the training strategy and what every split must satisfy.

    Attributes:
        strategy: 'random' (``train_chips`` windows), 'grid' (sequential, ``train_stride``)
            or 'points' (windows centred on the points of ``points_path``, for every split).
        buffer: pixels kept free between training chips and val/test blocks.
        focus_class: model target whose presence is oversampled in training chips, and
            ``focus_fraction`` the share of training chips that must contain it.
        balance_classes: random training chips are anchored on the pixels of each class in
            equal shares, so a rare class is not left with a handful of pixels.
    """

    chip_size: int
    strategy: str = "random"
    train_chips: int = 400
    train_stride: int | None = None
    eval_stride: int | None = None
    min_labelled_fraction: float = 0.05
    buffer: int = 0
    focus_class: int | None = None
    focus_fraction: float = 0.0
    points_path: str | None = None
    balance_classes: bool = True  # random training chips: an equal share anchored on each class
    ignore_ring: float = 0.0  # px along every label border set to ignore in every split's masks (the protocol)


@dataclass(frozen=True)
class ChipStore:
    """Where a chip store lives and how many chips each split holds."""

    path: Path
    counts: dict[str, int]
    n_features: int


def target_lut(n_classes: int, background_is_class: bool) -> np.ndarray:
    """Label ids (0 background, 1..N, 255 nodata) → model targets (0..K-1, 255 ignore)."""
    lut = np.full(256, IGNORE, dtype=np.uint8)
    if background_is_class:
        lut[: n_classes + 1] = np.arange(n_classes + 1)
    else:
        lut[1 : n_classes + 1] = np.arange(n_classes)
    return lut


MAIN_SCENE = "data.image"  # the ``scene`` of chips cut from the training scene


@dataclass(frozen=True)
class SplitScene:
    """Another scene that supplies every chip of one split (val or test).

    Attributes:
        prepared: its stack, prepared with the training scene's statistics.
        labels: its label raster, burnt with the training scene's class table.
        name: what the chip index's ``scene`` field says, e.g. ``data.split_scenes.test``.
    """

    prepared: Path
    labels: Path
    name: str


@dataclass
class _Scene:
    """One scene in memory: the stack with nodata zeroed, its valid pixels and model targets."""

    stack: np.ndarray
    valid: np.ndarray
    targets: np.ndarray
    transform: Affine
    crs: CRS
    plain: np.ndarray | None = None  # with an ignore ring: the targets without it


def _read_scene(prepared: str | Path, labels: str | Path, lut: np.ndarray, ring: float = 0.0) -> _Scene:
    with rasterio.open(prepared) as src:
        stack = src.read().astype(np.float32)
        valid = valid_mask(stack, src.nodata)
        transform, crs = src.transform, src.crs
    with rasterio.open(labels) as src:
        targets = lut[src.read(1)]
    targets[~valid] = IGNORE
    stack[:, ~valid] = 0.0  # the normalized mean: nodata must not look like extreme data
    plain = None
    if ring > 0:  # on the whole scene: a border just outside a chip still rings the pixels inside it
        plain = targets
        targets = ignore_borders(targets, ring, IGNORE)
        log.info("chips: data.boundary_ignore_px=%g ignores %d of %d labelled pixels along label borders", ring,
                 int((targets == IGNORE).sum() - (plain == IGNORE).sum()), int((plain != IGNORE).sum()))
    return _Scene(stack, valid, targets, transform, crs, plain)


def build_chip_store(
    prepared: str | Path,
    labels: str | Path,
    out_dir: str | Path,
    split_map: np.ndarray,
    plan: ChipPlan,
    lut: np.ndarray,
    n_targets: int,
    seed: int,
    per_chip: bool = False,
    split_scenes: Mapping[str, SplitScene] | None = None,
) -> ChipStore:
    """Cut chips for every split, each wholly inside its split's usable area, and store them.

    With ``per_chip`` each chip is standardized on its own valid pixels (the prepared stack
    was left unnormalized for that), as prediction windows are. A split named in
    ``split_scenes`` takes all its chips, by grid, from that other scene and none from this one.
    """
    if plan.strategy not in STRATEGIES:
        raise ConfigError(f"data.chip_strategy='{plan.strategy}': expected one of {list(STRATEGIES)}.")
    out_dir = Path(out_dir)
    others = dict(split_scenes or {})
    local = tuple(s for s in SPLITS if s not in others)
    main = _read_scene(prepared, labels, lut, plan.ignore_ring)
    windows = _choose_windows(plan, split_map, main.targets, main.transform, main.crs, seed, local, n_targets)
    check_no_leakage(windows, split_map.shape)
    records: list[dict] = []
    grids = {MAIN_SCENE: (main.transform, main.crs)}
    for split in local:
        records += _write_split(out_dir, split, main, windows[split], MAIN_SCENE, per_chip, n_targets)
    n_features = main.stack.shape[0]
    del main
    for split, other in others.items():
        scene = _read_scene(other.prepared, other.labels, lut, plan.ignore_ring)
        if scene.stack.shape[0] != n_features:
            raise InputDataError(
                f"{other.name}: prepared to {scene.stack.shape[0]} features but the training scene has "
                f"{n_features}: give a scene with the same bands as data.image."
            )
        windows[split] = _split_scene_windows(plan, scene, split, other.name)
        grids[other.name] = (scene.transform, scene.crs)
        records += _write_split(out_dir, split, scene, windows[split], other.name, per_chip, n_targets)
    counts = {split: len(windows[split]) for split in SPLITS if split in windows}
    write_text_atomic(out_dir / "chips.json", json.dumps({"counts": counts, "chips": records}))
    _write_footprints(out_dir / "chips.gpkg", records, grids)
    log.info("chips: %s chips of %d px (%s strategy)", counts, plan.chip_size, plan.strategy)
    return ChipStore(out_dir, counts, n_features)


def _new_npy(path: Path, dtype: type, shape: tuple[int, ...]) -> np.memmap:
    """An ``.npy`` file of its full size, mapped for writing, with its disk blocks reserved first.

    A memory map over a sparse file kills the process with SIGBUS when the disk fills up;
    reserving the blocks (posix_fallocate) turns that into an ENOSPC OSError here, which the
    cache reports as a full disk naming the entry.
    """
    array = np.lib.format.open_memmap(path, "w+", dtype, shape)
    if array.size == 0 or not hasattr(os, "posix_fallocate"):
        return array
    del array
    with open(path, "r+b") as f:
        os.posix_fallocate(f.fileno(), 0, os.fstat(f.fileno()).st_size)
    return np.load(path, mmap_mode="r+")


def _write_split(
    out_dir: Path, split: str, scene: _Scene, found: Sequence[Window], name: str, per_chip: bool, n_targets: int
) -> list[dict]:
    """Write one split's chips as ``{split}_image.npy``/``{split}_mask.npy``; return their index records."""
    size = found[0].size if found else 0
    images = _new_npy(out_dir / f"{split}_image.npy", np.float32, (len(found), scene.stack.shape[0], size, size))
    masks = _new_npy(out_dir / f"{split}_mask.npy", np.uint8, (len(found), size, size))
    plain = None
    if scene.plain is not None and split != "train":  # the plain test scores keep every labelled pixel
        plain = _new_npy(out_dir / f"{split}_plain_mask.npy", np.uint8, (len(found), size, size))
    records = []
    for i, w in enumerate(found):
        rows, cols = w.slices
        chip = scene.stack[:, rows, cols]
        if per_chip:
            chip = standardize_chips(chip, valid=scene.valid[rows, cols])
            chip[:, ~scene.valid[rows, cols]] = 0.0
        images[i] = chip
        masks[i] = scene.targets[rows, cols]
        if plain is not None:
            plain[i] = scene.plain[rows, cols]
        hist = np.bincount(masks[i].ravel(), minlength=256)
        records.append({
            "split": split, "scene": name, "index": i, "row": w.row, "col": w.col, "size": w.size,
            "labelled_fraction": float(1 - hist[IGNORE] / masks[i].size),
            "nodata_fraction": float(1 - scene.valid[rows, cols].mean()),
            "histogram": hist[:n_targets].tolist(),
        })
    images.flush()
    masks.flush()
    if plain is not None:
        plain.flush()
    return records


def _split_scene_windows(plan: ChipPlan, scene: _Scene, split: str, name: str) -> list[Window]:
    """Grid windows over the whole of another scene: all of it belongs to the one split."""
    labelled = scene.targets != IGNORE
    found = grid_windows(np.ones_like(labelled), labelled, plan.chip_size, plan.eval_stride or plan.chip_size,
                         plan.min_labelled_fraction)
    require_chips(split, found, (
        f"no window of {plan.chip_size} px in {name} has at least {100 * plan.min_labelled_fraction:.0f} "
        f"percent labelled pixels. Check that {name}.labels overlap {name}.image and share data.class_column "
        "and the class values, or lower data.chip_size or data.min_valid_fraction."
    ))
    return found


def _choose_windows(
    plan: ChipPlan, split_map: np.ndarray, targets: np.ndarray, transform, crs, seed: int,
    splits: Sequence[str] = SPLITS, n_targets: int | None = None,
) -> dict[str, list[Window]]:
    labelled = targets != IGNORE
    size = plan.chip_size
    eval_stride = plan.eval_stride or size
    points = _read_points(plan.points_path, transform, crs) if plan.strategy == "points" else None
    hint = (
        f"no window of {size} px fits inside the SPLIT area with at least "
        f"{100 * plan.min_labelled_fraction:.0f} percent labelled pixels. Lower data.chip_size or "
        "data.min_valid_fraction, raise data.block_size (or draw larger SPLIT polygons in "
        "data.split_vector), lower data.split_buffer, or check that the labels overlap the image."
    )
    windows: dict[str, list[Window]] = {}
    for split in splits:
        split_id = SPLITS.index(split)
        area = usable_area(split_map, split_id, plan.buffer)
        if points is not None:
            found = point_windows(*points, area, labelled, size, plan.min_labelled_fraction)
        elif split != "train":
            found = grid_windows(area, labelled, size, eval_stride, plan.min_labelled_fraction)
        elif plan.strategy == "grid":
            found = grid_windows(area, labelled, size, plan.train_stride or size, plan.min_labelled_fraction)
        else:
            found = _random_train_windows(plan, area, labelled, targets, seed, n_targets)
        if not found and not (labelled & (split_map == split_id)).any():
            require_chips(split, found, _no_labels_hint(split))
        require_chips(split, found, hint.replace("SPLIT", split))
        windows[split] = found
    return windows


def _no_labels_hint(split: str) -> str:
    """Why a split got no chip when none of its blocks holds a labelled pixel: the chip size is not it."""
    return (f"no {split} block holds any labelled pixel: the split dealt every labelled block to the other splits. "
            f"Give {split} a larger share (data.split_fractions), cut smaller blocks to deal (data.block_size), "
            "choose another data.seed or fold (data.folds/data.fold), label more places spread over the scene, "
            f"or draw the {split} area yourself (data.split_vector or data.split_scenes.{split}).")


def _random_train_windows(plan: ChipPlan, area, labelled, targets, seed: int,
                          n_targets: int | None = None) -> list[Window]:
    """Random windows: a share must contain the focus class when one is set, the rest are
    balanced over the classes (``plan.balance_classes``) or uniform over the labelled area."""
    n_focus = 0
    focused: list[Window] = []
    if plan.focus_class is not None and plan.focus_fraction > 0:
        n_focus = int(round(plan.train_chips * plan.focus_fraction))
        focused = random_windows(area, targets == plan.focus_class, plan.chip_size, n_focus,
                                 plan.min_labelled_fraction, seed + 1)
        if len(focused) < n_focus:
            log.warning("chips: only %d of %d training chips could hold the oversampled class",
                        len(focused), n_focus)
    balanced: list[Window] = []
    left = plan.train_chips - len(focused)
    if plan.balance_classes:
        n_targets = n_targets or int(targets[targets != IGNORE].max(initial=0)) + 1
        balanced = class_balanced_windows(area, labelled, targets, n_targets, plan.chip_size, left,
                                          plan.min_labelled_fraction, seed + 2)
    rest = random_windows(area, labelled, plan.chip_size, left - len(balanced),
                          plan.min_labelled_fraction, seed) if left > len(balanced) else []
    return focused + balanced + rest


def _read_points(path: str | None, transform, crs) -> tuple[np.ndarray, np.ndarray]:
    """Pixel rows/cols of the points of a vector file (reprojected to the raster CRS)."""
    if not path or not Path(path).exists():
        raise InputDataError(f"data.chip_points='{path}': a point file is needed for chip_strategy=points.")
    layer = gpd.read_file(path).to_crs(crs)
    xy = layer.geometry.representative_point()
    rows, cols = rasterio.transform.rowcol(transform, xy.x.to_numpy(), xy.y.to_numpy())
    return np.asarray(rows), np.asarray(cols)


def _write_footprints(path: Path, records: Sequence[dict], grids: Mapping[str, tuple[Affine, CRS]]) -> None:
    """Chip footprints as polygons, so a user can see in QGIS where each split was cut.

    Chips of other scenes are reprojected to the training scene's CRS (one layer, one CRS).
    """
    crs = grids[MAIN_SCENE][1]
    columns = {k: [r[k] for r in records]
               for k in ("split", "scene", "index", "row", "col", "size", "labelled_fraction", "nodata_fraction")}
    n_targets = len(records[0]["histogram"]) if records else 0
    for t in range(n_targets):
        columns[f"pixels_class_{t}"] = [r["histogram"][t] for r in records]
    geoms = []
    for r in records:
        transform = grids[r["scene"]][0]
        x0, y0 = transform * (r["col"], r["row"])
        x1, y1 = transform * (r["col"] + r["size"], r["row"] + r["size"])
        geoms.append(box(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
    frame = gpd.GeoDataFrame(columns, geometry=geoms, crs=crs)
    for name, (_, scene_crs) in grids.items():
        if name != MAIN_SCENE and scene_crs != crs:
            mine = (frame["scene"] == name).to_numpy()
            frame.loc[mine, "geometry"] = gpd.GeoSeries(geoms, crs=scene_crs)[mine].to_crs(crs).to_numpy()
    _warn_if_overlapping(frame)
    frame.to_file(path, driver="GPKG")


def _warn_if_overlapping(frame: gpd.GeoDataFrame) -> None:
    """Chips of another scene lying on training chips: fine for another date, a leak for the same one."""
    train = frame[frame["split"] == "train"]
    if train.empty:
        return
    area = shapely.union_all(train.geometry.to_numpy())  # GeoSeries.union_all needs geopandas >= 1
    for name in sorted(set(frame["scene"]) - {MAIN_SCENE}):
        hits = int(frame[frame["scene"] == name].geometry.intersects(area).sum())
        if hits:
            log.warning(
                "chips: %d chips of %s lie on the ground of training chips; a test there is not spatially "
                "independent (acceptable for another date of the same place, a leak for the same image).",
                hits, name,
            )


def split_class_counts(entry: str | Path, n_classes: int) -> dict[str, np.ndarray]:
    """Labelled pixels per class in the chips of each split, from their histograms in ``chips.json``
    (a pixel covered by several overlapping chips counts once per chip)."""
    counts: dict[str, np.ndarray] = {}
    for rec in json.loads((Path(entry) / "chips.json").read_text())["chips"]:
        hist = np.asarray(rec["histogram"][:n_classes], dtype=np.int64)
        counts[rec["split"]] = counts.get(rec["split"], np.zeros(n_classes, dtype=np.int64)) + hist
    return counts


def load_chip_store(entry: str | Path) -> ChipStore:
    entry = Path(entry)
    counts = json.loads((entry / "chips.json").read_text())["counts"]
    n_features = int(np.load(entry / "train_image.npy", mmap_mode="r").shape[1])
    return ChipStore(entry, counts, n_features)


__all__ = ["ChipPlan", "ChipStore", "SplitScene", "build_chip_store", "load_chip_store", "target_lut", "IGNORE",
           "MAIN_SCENE"]
