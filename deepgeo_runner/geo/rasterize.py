"""Ground truth onto the image grid: vector polygons or a label raster → class ids.

Encoding of the label raster: 0 background (outside every class of interest), 1..N the
classes of interest in configured order, 255 nodata (no image data or no label data).
Where polygons of several classes overlap, the class listed last in ``classes`` wins (and
any class of interest wins over polygons of other classes). Several source classes can be
grouped into one (``class_groups``); labelled features of no class of interest become
background or nodata (``others``). Labels are burnt window by window
(:class:`LabelSource`), so a label raster larger than memory is written with bounded memory.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import rasterio.windows
import shapely
from rasterio.warp import Resampling, reproject
from rasterio.windows import Window

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.choices import OtherClasses
from deepgeo_runner.geo.raster_io import Grid, reading

BACKGROUND = 0
NODATA = 255
VECTOR_SUFFIXES = (".gpkg", ".shp", ".geojson", ".json", ".fgb", ".gml", ".kml")
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")


OTHERS = tuple(o.value for o in OtherClasses)


def _match_values(classes: Sequence[str], class_values: Sequence[int] | None) -> list:
    if class_values is not None and len(class_values) != len(classes):
        raise InputDataError(
            f"data.class_values has {len(class_values)} values for {len(classes)} data.classes; "
            "give one value per class, in the same order."
        )
    return list(class_values) if class_values is not None else list(classes)


def class_value_sets(
    classes: Sequence[str],
    class_values: Sequence | None = None,
    class_groups: Mapping[str, Sequence] | None = None,
    as_str: bool = True,
) -> list[list]:
    """The source values meaning each class: its own value plus those grouped into it.

    ``class_groups`` maps a class of interest to several source classes, e.g.
    ``{deforestation: [clearcut, degradation]}``, so that they become one id.
    """
    own = _match_values(classes, class_values)
    groups = dict(class_groups or {})
    unknown = [g for g in groups if g not in classes]
    if unknown:
        raise InputDataError(
            f"data.class_groups names {unknown}, which are not in data.classes {list(classes)}."
        )
    sets = []
    for name, value in zip(classes, own, strict=True):
        members = [value, *groups.get(name, [])]
        sets.append([str(v) for v in members] if as_str else list(members))
    return sets


class LabelSource:
    """Ground truth that can be burnt onto any window of a grid, for bounded memory.

    A vector layer is read, reprojected to the grid's CRS and repaired once; each window then
    rasterizes only the polygons that intersect it. A label raster is resampled (nearest)
    onto each window. Ids: 0 background, 1..N classes, 255 nodata; labelled features of no
    class of interest become background (``others='background'``) or 255 (``'ignore'``).
    """

    def __init__(
        self,
        path: str | Path,
        grid: Grid,
        class_column: str,
        classes: Sequence[str],
        class_values: Sequence | None = None,
        all_touched: bool = False,
        class_groups: Mapping[str, Sequence] | None = None,
        others: str = "background",
    ) -> None:
        if others not in OTHERS:
            raise InputDataError(f"data.other_classes='{others}': expected one of {list(OTHERS)}.")
        self.path, self.grid, self.all_touched, self.others = Path(path), grid, all_touched, others
        if not self.path.exists():
            raise InputDataError(
                f"labels file not found: '{self.path}'. Set data.labels to a vector file "
                f"({', '.join(VECTOR_SUFFIXES)}) or a label GeoTIFF."
            )
        suffix = self.path.suffix.lower()
        if suffix in RASTER_SUFFIXES:
            self.kind = "raster"
            values = list(class_values) if class_values is not None else list(range(1, len(classes) + 1))
            if len(values) != len(classes):
                raise InputDataError(
                    f"data.class_values has {len(values)} values for {len(classes)} data.classes."
                )
            self.value_sets = class_value_sets(classes, values, class_groups, as_str=False)
        elif suffix in VECTOR_SUFFIXES or self.path.is_dir():
            self.kind = "vector"
            self._load_vector(class_column, classes, class_values, class_groups)
        else:
            raise InputDataError(
                f"labels '{self.path}': unknown format '{suffix}'. Expected a vector file "
                f"({', '.join(VECTOR_SUFFIXES)}) or a raster ({', '.join(RASTER_SUFFIXES)})."
            )

    def _load_vector(self, class_column, classes, class_values, class_groups) -> None:
        path = self.path
        try:
            layer = gpd.read_file(path)
        except Exception as exc:
            raise InputDataError(f"cannot read labels '{path}' as a vector file: {exc}") from exc
        if class_column not in layer.columns:
            raise InputDataError(
                f"labels '{path}' have no column '{class_column}' (data.class_column). "
                f"Columns: {[c for c in layer.columns if c != 'geometry']}."
            )
        if layer.crs is None:
            raise InputDataError(f"labels '{path}' have no CRS: set one (e.g. with ogr2ogr -a_srs).")
        layer = layer[layer.geometry.notna() & ~layer.geometry.is_empty]
        layer = layer.to_crs(self.grid.crs)
        layer["geometry"] = layer.geometry.make_valid()
        as_str = class_values is None
        sets = class_value_sets(classes, class_values, class_groups, as_str=as_str)
        source = layer[class_column].astype(str) if as_str else layer[class_column]
        present = set(source.unique().tolist())
        wanted = {v for vs in sets for v in vs}
        if not present & wanted:
            raise InputDataError(
                f"none of the classes {sorted(map(str, wanted))} appears in column '{class_column}' of "
                f"'{path}'; its values are {sorted(map(str, present))[:20]}. Check data.classes / "
                "data.class_values / data.class_groups."
            )
        ids = np.zeros(len(layer), dtype=np.int64)  # 0: no class of interest
        for class_id, values in enumerate(sets, start=1):
            ids[source.isin(values).to_numpy()] = class_id  # last listed class wins
        keep = ids > 0 if self.others == "background" else np.ones(len(layer), dtype=bool)
        self.geoms = layer.geometry.to_numpy()[keep]
        self.ids = ids[keep]
        self.tree = shapely.STRtree(self.geoms) if len(self.geoms) else None

    def burn(self, window: Window | None = None) -> np.ndarray:
        """uint8 class ids of ``window`` (default: the whole grid)."""
        grid = self.grid
        window = window or Window(0, 0, grid.width, grid.height)
        shape = (int(window.height), int(window.width))
        transform = rasterio.windows.transform(window, grid.transform)
        if self.kind == "raster":
            return self._read_raster(shape, transform)
        labels = np.zeros(shape, dtype=np.uint8)
        if self.tree is None:
            return labels
        hits = np.sort(self.tree.query(shapely.box(*rasterio.windows.bounds(window, grid.transform))))
        if hits.size == 0:
            return labels
        # Burn order = overlap rule: other classes first (ignore), then class 1..N, so the
        # class listed last wins where polygons overlap.
        order = hits[np.argsort(self.ids[hits] if self.others == "background"
                                else np.where(self.ids[hits] == 0, -1, self.ids[hits]), kind="stable")]
        shapes = [(self.geoms[i], int(self.ids[i]) if self.ids[i] > 0 else NODATA) for i in order]
        rasterio.features.rasterize(shapes, out=labels, transform=transform,
                                    all_touched=self.all_touched, dtype=np.uint8)
        return labels

    def _read_raster(self, shape: tuple[int, int], transform) -> np.ndarray:
        with reading(self.path, "labels"), rasterio.open(self.path) as src:
            source = np.full(shape, np.nan, dtype=np.float64)
            src_nodata = src.nodata
            reproject(
                rasterio.band(src, 1),
                source,
                dst_transform=transform,
                dst_crs=self.grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling.nearest,
            )
        fill = BACKGROUND if self.others == "background" else NODATA
        labels = np.full(shape, fill, dtype=np.uint8)
        for class_id, values in enumerate(self.value_sets, start=1):
            labels[np.isin(source, values)] = class_id
        missing = ~np.isfinite(source)
        if src_nodata is not None:
            missing |= source == src_nodata
        labels[missing] = NODATA
        return labels


def read_label_raster(
    path: str | Path,
    grid: Grid,
    n_classes: int,
    class_values: Sequence[int] | None = None,
) -> np.ndarray:
    """Map a label GeoTIFF onto ``grid`` (nearest neighbour) and recode it to class ids.

    Values listed in ``class_values`` (default 1..N) become 1..N, the file's nodata becomes
    255, everything else background 0.
    """
    classes = [f"class{i}" for i in range(1, n_classes + 1)]
    return LabelSource(path, grid, "", classes, class_values).burn()


def read_labels(
    path: str | Path,
    grid: Grid,
    class_column: str,
    classes: Sequence[str],
    class_values: Sequence[int] | None = None,
    all_touched: bool = False,
    class_groups: Mapping[str, Sequence] | None = None,
    others: str = "background",
) -> np.ndarray:
    """Labels from either a vector file or a label raster, chosen by the file suffix."""
    return LabelSource(path, grid, class_column, classes, class_values, all_touched,
                       class_groups, others).burn()


def class_colormap(
    colors: Sequence[str], first_id: int = 1
) -> dict[int, tuple[int, int, int, int]]:
    """GDAL colour table for a class raster: ids first_id.. in the given '#rrggbb' colours."""
    table: dict[int, tuple[int, int, int, int]] = {BACKGROUND: (0, 0, 0, 255), NODATA: (0, 0, 0, 0)}
    for class_id, hex_color in enumerate(colors, start=first_id):
        h = hex_color.lstrip("#")
        table[class_id] = (int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16), 255)
    return table
