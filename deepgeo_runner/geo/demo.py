"""A built-in demo scene: a synthetic Landsat-8 OLI subset over the Brazilian Amazon.

It mimics the DeepGeo case study (deforestation mapping in Pará with PRODES polygons) so
that ``deepgeo`` with no arguments can run a whole segmentation cycle without any
download. Everything is made by code from one seed:

* a land-cover "truth" built from shapely geometries (a fishbone of roads with clearings,
  a meandering river with tributaries, lakes, abandoned clearings regrowing, small clouds
  and their shadows) and burned onto the grid with :func:`rasterio.features.rasterize`,
  exactly as the pipeline burns the labels, so vectors and raster agree;
* six bands of surface reflectance (OLI B2..B7) with class spectra, per-object offsets,
  canopy and soil texture, terrain illumination, a slight point-spread blur and sensor
  noise, so that one band and one threshold are not enough but 64-px chips of all bands
  are;
* PRODES-like ground truth polygons that label only part of the scene: most clearings,
  most of the water and sample polygons of forest; regrowth, roads, clouds and shadows
  are never labelled.

Nothing here imports torch, Hydra or Lightning.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
import shapely
from affine import Affine
from scipy import ndimage
from shapely import affinity
from shapely.geometry import LineString, MultiPolygon, Point, Polygon, box
from shapely.geometry.base import BaseGeometry

from deepgeo_runner.core.atomic import atomic_path, remove_stale_temporaries

IMAGE_NAME = "demo_oli.tif"
LABELS_NAME = "demo_prodes.gpkg"
REFERENCE_NAME = "demo_reference.tif"  # the wall-to-wall truth as class ids: a reference layer for `assess`
REFERENCE_NODATA = 255
LAYER_NAME = "prodes"
CRS = "EPSG:32722"  # WGS 84 / UTM zone 22S, eastern Pará
PIXEL = 30.0
ORIGIN = (600_000.0, 9_600_000.0)  # upper-left corner, north-up
NODATA = -9999.0
TRANSFORM = Affine(PIXEL, 0.0, ORIGIN[0], 0.0, -PIXEL, ORIGIN[1])  # north-up, 30 m
BAND_NAMES: tuple[str, ...] = ("blue", "green", "red", "nir", "swir1", "swir2")
CLASSES: tuple[str, ...] = ("forest", "deforestation", "water")

# Truth codes of the land-cover map (only the first three are ever labelled).
FOREST, DEFORESTATION, WATER, REGROWTH, ROAD = 0, 1, 2, 3, 4

# Mean surface reflectance, bands blue, green, red, nir, swir1, swir2 (OLI B2..B7).
_FOREST = np.array([0.025, 0.045, 0.032, 0.300, 0.145, 0.060])
_PASTURE = np.array([0.040, 0.070, 0.052, 0.275, 0.225, 0.115])  # green pasture
_SOIL = np.array([0.075, 0.105, 0.125, 0.220, 0.300, 0.215])  # bare soil, fresh clearing
_BURNED = np.array([0.038, 0.052, 0.058, 0.145, 0.190, 0.170])  # slash-and-burn scar
_REGROWTH = np.array([0.030, 0.060, 0.045, 0.330, 0.185, 0.085])  # capoeira
_WATER = np.array([0.055, 0.062, 0.048, 0.030, 0.015, 0.010])
_TURBID = np.array([0.020, 0.035, 0.035, 0.012, 0.004, 0.002])  # added by sediment
_ROAD = np.array([0.090, 0.120, 0.150, 0.220, 0.320, 0.250])
_CLOUD = np.array([0.380, 0.370, 0.390, 0.450, 0.360, 0.240])
# Sensor noise per band: red noise is comparable to the forest/pasture red difference.
_NOISE_SD = np.array([0.006, 0.007, 0.011, 0.014, 0.011, 0.009])
# Canopy texture (sunlit crowns, shaded gaps) per band, relative.
_CROWN = np.array([0.15, 0.15, 0.20, 0.10, 0.12, 0.15])


@dataclass(frozen=True)
class DemoScene:
    """Paths and metadata of the generated demo scene."""

    image: Path  # GeoTIFF
    labels: Path  # GeoPackage
    reference: Path  # GeoTIFF of class ids 1..3 over the whole scene (what an analyst would label)
    band_names: tuple[str, ...]  # ("blue","green","red","nir","swir1","swir2")
    classes: tuple[str, ...]  # ("forest","deforestation","water")


def make_demo_scene(out_dir: Path | str, size: int = 512, seed: int = 0) -> DemoScene:
    """Generate (or reuse, when both files already exist in out_dir) the demo scene.

    Each file is written under a name unique to this process and moved into place with
    :func:`os.replace`, so that several processes may call this at once and a reader
    never sees a half-written file.

    Args:
        out_dir: folder of ``demo_oli.tif``, ``demo_prodes.gpkg`` and ``demo_reference.tif``
            (created if needed).
        size: side of the square scene in pixels (30 m), 64 or more.
        seed: seed of every random draw; the same (size, seed) gives the same scene.

    Returns:
        The paths of the three files with the band and class names.
    """
    out_dir = Path(out_dir)
    scene = DemoScene(out_dir / IMAGE_NAME, out_dir / LABELS_NAME, out_dir / REFERENCE_NAME, BAND_NAMES, CLASSES)
    if scene.image.is_file() and scene.labels.is_file() and scene.reference.is_file():
        return scene
    if int(size) < 64:
        raise ValueError(f"make_demo_scene: size={size} is too small; use 64 or more (e.g. 512).")
    image, labels, truth = _generate(int(size), int(seed))
    remove_stale_temporaries(out_dir)
    with atomic_path(scene.reference, keep_suffix=True, what="demo scene") as tmp_reference:
        _write_reference(tmp_reference, truth)
    with atomic_path(scene.labels, keep_suffix=True, what="demo scene") as tmp_labels:
        _write_labels(tmp_labels, labels)
    with atomic_path(scene.image, keep_suffix=True, what="demo scene") as tmp_image:
        _write_image(tmp_image, image, int(seed))
    return scene


# --------------------------------------------------------------------------- layout


class _Index:
    """A bucket grid of geometries: cheap 'does this candidate touch anything' queries."""

    def __init__(self, cell: float = 32.0) -> None:
        self.cell = cell
        self.buckets: dict[tuple[int, int], list[BaseGeometry]] = defaultdict(list)

    def _cells(self, geom: BaseGeometry, margin: float = 0.0) -> Iterable[tuple[int, int]]:
        x0, y0, x1, y1 = geom.bounds
        c = self.cell
        for i in range(math.floor((x0 - margin) / c), math.floor((x1 + margin) / c) + 1):
            for j in range(math.floor((y0 - margin) / c), math.floor((y1 + margin) / c) + 1):
                yield i, j

    def add(self, geom: BaseGeometry) -> None:
        for key in self._cells(geom):
            self.buckets[key].append(geom)

    def all(self) -> list[BaseGeometry]:
        """Every geometry once."""
        return list({id(g): g for bucket in self.buckets.values() for g in bucket}.values())

    def hits(self, geom: BaseGeometry, distance: float = 0.0) -> bool:
        """Whether ``geom`` comes within ``distance`` of any geometry of the index."""
        shapely.prepare(geom)
        seen: set[int] = set()
        for key in self._cells(geom, distance):
            for other in self.buckets.get(key, ()):
                if id(other) in seen:
                    continue
                seen.add(id(other))
                if geom.intersects(other) if distance <= 0 else shapely.dwithin(geom, other, distance):
                    return True
        return False


@dataclass
class _Object:
    """One land-cover object of the truth map with its own spectral parameters."""

    geom: BaseGeometry  # pixel coordinates (x = column, y = row)
    code: int
    mean: np.ndarray
    stripe_amp: float = 0.0
    stripe_angle: float = 0.0
    stripe_period: float = 5.0
    stripe_phase: float = 0.0


@dataclass
class _Layout:
    """Everything drawn in pixel coordinates before it is moved to map coordinates."""

    size: int
    footprint: BaseGeometry
    objects: list[_Object] = field(default_factory=list)
    clouds: list[BaseGeometry] = field(default_factory=list)
    shadows: list[BaseGeometry] = field(default_factory=list)
    labels: list[tuple[str, BaseGeometry]] = field(default_factory=list)


def _blob_coords(cx: np.ndarray, cy: np.ndarray, r: np.ndarray, aspect: np.ndarray, angle: np.ndarray,
                 rng: np.random.Generator, rough: float = 0.3, n: int = 28) -> np.ndarray:
    """Vertices (m, n, 2) of m irregular star-shaped outlines: lakes, clouds, clearings."""
    m = len(cx)
    theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    k = np.array([2.0, 3.0, 5.0])
    amp = rough / k * rng.uniform(0.3, 1.0, (m, 3))
    phase = rng.uniform(0, 2 * np.pi, (m, 3))
    radius = 1.0 + (amp[:, :, None] * np.cos(k[None, :, None] * theta + phase[:, :, None])).sum(1)
    radius = np.maximum(radius, 0.35) * r[:, None]
    x = radius * np.cos(theta) * aspect[:, None]
    y = radius * np.sin(theta) / aspect[:, None]
    ca, sa = np.cos(angle)[:, None], np.sin(angle)[:, None]
    return np.stack([cx[:, None] + ca * x - sa * y, cy[:, None] + sa * x + ca * y], axis=-1)


def _blob(cx: float, cy: float, r: float, rng: np.random.Generator, aspect: float = 1.0,
          angle: float = 0.0, rough: float = 0.3) -> Polygon:
    """One irregular star-shaped polygon (always valid, since it is star-shaped)."""
    coords = _blob_coords(*(np.array([v], dtype=float) for v in (cx, cy, r, aspect, angle)), rng, rough)
    return shapely.polygons(coords[0])


def _rectangle_coords(centre: np.ndarray, sides: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Vertices (m, 4, 2) of m rotated rectangles."""
    u = np.stack([np.cos(angle), np.sin(angle)], -1) * sides[:, :1] / 2
    v = np.stack([-np.sin(angle), np.cos(angle)], -1) * sides[:, 1:] / 2
    return np.stack([centre - u - v, centre + u - v, centre + u + v, centre - u + v], axis=1)


def _footprint(size: int, rng: np.random.Generator) -> BaseGeometry:
    """The valid area: a square tilted like a Landsat path, leaving nodata wedges at the corners."""
    tilt = math.radians(rng.uniform(10.0, 12.0))
    frame = box(0, 0, size, size)
    target = rng.uniform(0.06, 0.08)
    lo, hi = 0.7 * size, 1.3 * size
    for _ in range(40):  # bisect the side so the corners hold ~7 % of nodata
        side = 0.5 * (lo + hi)
        square = affinity.rotate(box(-side / 2, -side / 2, side / 2, side / 2), tilt, origin=(0, 0),
                                 use_radians=True)
        square = affinity.translate(square, size / 2, size / 2)
        nodata = 1.0 - square.intersection(frame).area / frame.area
        lo, hi = (side, hi) if nodata > target else (lo, side)
    return square.intersection(frame)


@dataclass
class _Path:
    """A densely sampled polyline with its running length: O(log n) points along it.

    shapely's ``interpolate``/``substring`` walk the whole line on every call, which is
    quadratic for the long roads and rivers of a large scene.
    """

    coords: np.ndarray  # (n, 2)

    def __post_init__(self) -> None:
        steps = np.hypot(*np.diff(self.coords, axis=0).T)
        self.cum = np.concatenate([[0.0], np.cumsum(steps)])
        self.line = LineString(self.coords)

    @property
    def length(self) -> float:
        return float(self.cum[-1])

    def at(self, s: float) -> np.ndarray:
        """The point at distance ``s`` along the line."""
        x, y = self.coords.T
        return np.array([np.interp(s, self.cum, x), np.interp(s, self.cum, y)])

    def angle(self, s: float) -> float:
        """Direction of travel at ``s``, in radians."""
        a, b = self.at(max(s - 2.0, 0.0)), self.at(min(s + 2.0, self.length))
        return math.atan2(b[1] - a[1], b[0] - a[0])

    def sub(self, s0: float, s1: float) -> LineString:
        """The part of the line between distances ``s0`` and ``s1``."""
        inside = (self.cum > s0) & (self.cum < s1)
        return LineString(np.vstack([self.at(s0), self.coords[inside], self.at(s1)]))

    def pieces(self, length: float) -> list[LineString]:
        """Cut into pieces of about ``length`` (an index of them stays local)."""
        cuts = np.append(np.arange(0.0, self.length, length), self.length)
        return [self.sub(a, b) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b - a > 1e-6]


def _wiggly_line(start: np.ndarray, direction: float, length: float, waves: Sequence[tuple[float, float]],
                 rng: np.random.Generator, step: float = 2.0) -> _Path:
    """A line along ``direction`` displaced sideways by a sum of sines (amplitude, wavelength)."""
    t = np.arange(0.0, length + step, step)
    offset = np.zeros_like(t)
    for amplitude, wavelength in waves:
        offset += amplitude * np.sin(2 * np.pi * t / wavelength + rng.uniform(0, 2 * np.pi))
    offset -= offset[0]
    u = np.array([math.cos(direction), math.sin(direction)])
    n = np.array([-u[1], u[0]])
    return _Path(start[None, :] + t[:, None] * u[None, :] + offset[:, None] * n[None, :])


def _roads(size: int, rng: np.random.Generator, lay: _Layout, road_idx: _Index) -> list[tuple[_Path, float]]:
    """A fishbone: gently curving trunk roads across the scene, straight side roads off them.

    Returns the roads (line, half-width) along which clearings are opened.
    """
    alpha = math.radians(rng.uniform(-25.0, 25.0))
    u = np.array([math.cos(alpha), math.sin(alpha)])
    n = np.array([-u[1], u[0]])
    centre = np.array([size / 2, size / 2])
    n_main = max(1, round(size / 170))
    spacing = size / n_main
    roads: list[tuple[_Path, float]] = []
    for k in range(n_main):
        offset = -size / 2 + (k + 0.5) * spacing + rng.uniform(-0.15, 0.15) * spacing
        start = centre - 0.8 * size * u + offset * n
        main = _wiggly_line(start, alpha, 1.6 * size, [(rng.uniform(3, 10), rng.uniform(150, 300))], rng, 4.0)
        roads.append((main, 0.9))
        # side roads ("vicinais") every 35-55 px, on one side or both
        s = rng.uniform(0, 30)
        while s < main.length:
            p = main.at(s)
            if -20 < p[0] < size + 20 and -20 < p[1] < size + 20:
                sides = [1, -1] if rng.random() < 0.35 else [int(rng.choice([1, -1]))]
                for side in sides:
                    ang = alpha + side * math.pi / 2 + math.radians(rng.uniform(-10, 10))
                    length = rng.uniform(25, 0.55 * spacing)
                    side_road = _wiggly_line(p, ang, length, [(rng.uniform(0, 2), 60.0)], rng, 3.0)
                    roads.append((side_road, 0.6))
            s += rng.uniform(35, 55)
    for path, half in roads:
        geom = path.line.buffer(half, cap_style="flat")
        lay.objects.append(_Object(geom, ROAD, _ROAD * rng.uniform(0.85, 1.15)))
        for piece in path.pieces(24.0):
            road_idx.add(piece.buffer(half, quad_segs=2))
    return roads


def _water(size: int, rng: np.random.Generator, lay: _Layout, road_idx: _Index,
           water_idx: _Index) -> list[BaseGeometry]:
    """A meandering river with tributaries and lakes spread over the scene.

    Returns the water polygons to label: river pieces (flat-capped, inside the river) and lakes.
    """
    water = _WaterDrawing(rng, lay, water_idx)
    _draw_rivers(size, water)
    _draw_lakes(size, water, road_idx)
    return water.pieces


@dataclass
class _WaterDrawing:
    """What the rivers and lakes of one scene share while they are drawn: the random stream (its draws,
    in this order, make the scene), the layout painted, the index of water already placed, and the
    polygons to label."""

    rng: np.random.Generator
    lay: _Layout
    index: _Index
    pieces: list[BaseGeometry] = field(default_factory=list)

    def add_river(self, path: _Path, w: float) -> None:
        """A river of width ``w`` along ``path``, labelled in flat-capped pieces 30–70 px long."""
        rng = self.rng
        river = path.line.buffer(w / 2)
        turbidity = rng.uniform(0.2, 1.0)
        self.lay.objects.append(_Object(river, WATER, _WATER + turbidity * _TURBID))
        for piece in path.pieces(24.0):
            self.index.add(piece.buffer(w / 2, quad_segs=2))
        d = 0.0
        while d < path.length:
            step = rng.uniform(30, 70)
            seg = path.sub(d, min(d + step, path.length)).buffer(w / 2, cap_style="flat")
            if seg.area > 0:
                self.pieces.append(seg.intersection(river))
            d += step


def _draw_rivers(size: int, water: _WaterDrawing) -> None:
    """About one roughly north-south river per 640 px, each with narrower tributaries leaving it sideways."""
    rng = water.rng
    centre = np.array([size / 2, size / 2])
    width = float(np.clip(6.0 + size / 256, 6.0, 12.0))
    n_rivers = max(1, round(size / 640))
    for k in range(n_rivers):
        beta = math.radians(rng.uniform(60, 120))  # roughly north-south
        v = np.array([math.cos(beta), math.sin(beta)])
        across = np.array([-v[1], v[0]])
        offset = (-0.5 + (k + rng.uniform(0.3, 0.7)) / n_rivers) * size * 0.8
        start = centre - 0.75 * size * v + offset * across
        waves = [(rng.uniform(0.05, 0.09) * size, rng.uniform(0.5, 0.8) * size),
                 (rng.uniform(2.5, 3.5) * width, rng.uniform(11, 15) * width)]
        line = _wiggly_line(start, beta, 1.5 * size, waves, rng)
        water.add_river(line, width)
        # tributaries: narrower streams leaving the river sideways
        river = line.line.buffer(width / 2 + 2.0)
        for _ in range(max(1, round(size / 200))):
            for _ in range(10):  # a stream that leaves the river and does not come back
                s = rng.uniform(0.2, 0.8) * line.length
                p = line.at(s)
                ang = line.angle(s) + float(rng.choice([1, -1])) * math.radians(rng.uniform(55, 90))
                w = max(3.0, 0.6 * width)
                stream = _wiggly_line(p, ang, rng.uniform(0.3, 0.6) * size,
                                      [(rng.uniform(1.5, 2.5) * w, rng.uniform(12, 16) * w)], rng)
                if not stream.sub(3 * width, stream.length).intersects(river):
                    water.add_river(stream, w)
                    break


def _draw_lakes(size: int, water: _WaterDrawing, road_idx: _Index) -> None:
    """Lakes, about one per 128-px cell, not on roads or rivers; later passes make sure a scene has one
    (two from 256 px)."""
    rng, lay = water.rng, water.lay
    cell = 128.0
    n_cells = max(1, round(size / cell))
    step = size / n_cells
    n_lakes = 0
    for attempt in range(3):
        for i in range(n_cells):
            for j in range(n_cells):
                if attempt == 0 and rng.random() > 0.85:
                    continue
                if attempt > 0 and n_lakes >= 1 + (size >= 256):
                    break
                for _ in range(8):
                    r = rng.uniform(6, 16)
                    cx = (i + rng.uniform(0.15, 0.85)) * step
                    cy = (j + rng.uniform(0.15, 0.85)) * step
                    lake = _blob(cx, cy, r, rng, aspect=rng.uniform(1.0, 1.6), angle=rng.uniform(0, np.pi))
                    if (water.index.hits(lake, 3.0) or road_idx.hits(lake, 3.0)
                            or not lay.footprint.contains(lake.buffer(3.0))):
                        continue
                    turbidity = rng.uniform(0.0, 0.6)
                    lay.objects.append(_Object(lake, WATER, _WATER + turbidity * _TURBID))
                    water.index.add(lake)
                    water.pieces.append(lake)
                    n_lakes += 1
                    break


def _clearing_mean(rng: np.random.Generator) -> np.ndarray:
    """Each clearing its own spectrum: pasture to bare soil, or a burn scar."""
    if rng.random() < 0.12:
        mean = _BURNED.copy()
    else:
        mean = _SOIL + rng.beta(1.3, 1.0) * (_PASTURE - _SOIL)
    return mean * (1 + rng.normal(0.0, 0.06)) * (1 + rng.normal(0.0, 0.04, 6))


def _clearings(rng: np.random.Generator, lay: _Layout, roads: list[tuple[_Path, float]],
               road_idx: _Index, water_idx: _Index, clear_idx: _Index) -> list[BaseGeometry]:
    """Clearings (rectangles, some rotated, and irregular fronts) on both sides of every road.

    A lot that does not fit (another road, a river, a neighbour) is tried smaller. About
    one in seven clearings is abandoned and regrowing (capoeira, never labelled). Returns
    the deforestation polygons.
    """
    size = lay.size
    frame = box(-10, -10, size + 10, size + 10)
    cleared: list[BaseGeometry] = []
    for line, half in roads:
        occupancy = 0.7 if half > 0.8 else 0.85
        for side in (1.0, -1.0):
            s = rng.uniform(0, 6)
            while s < line.length - 3:
                w = rng.uniform(5, 16)
                if rng.random() < occupancy and frame.contains(Point(line.at(s))):
                    depth = rng.uniform(8, 30)
                    for shrink in (1.0, 0.7, 0.5):
                        geom = _one_clearing(line, s, w * shrink, depth * shrink, side, half, rng)
                        if geom is None or road_idx.hits(geom, 1.0):
                            continue
                        if water_idx.hits(geom, 2.0) or clear_idx.hits(geom, 1.0):
                            continue
                        clear_idx.add(geom)
                        if rng.random() < 0.15:
                            mean = _REGROWTH + rng.uniform(-0.3, 0.4) * (_FOREST - _REGROWTH)
                            lay.objects.append(_Object(geom, REGROWTH, mean * (1 + rng.normal(0, 0.03, 6))))
                        else:
                            angle = line.angle(s) + rng.choice([0.0, np.pi / 2])
                            lay.objects.append(_Object(
                                geom, DEFORESTATION, _clearing_mean(rng), stripe_amp=rng.uniform(0.0, 0.12),
                                stripe_angle=angle, stripe_period=rng.uniform(3.0, 7.0),
                                stripe_phase=rng.uniform(0, 2 * np.pi)))
                            cleared.append(geom)
                        break
                s += w + rng.uniform(1.5, 4.0)
    return cleared


def _one_clearing(line: _Path, s: float, w: float, depth: float, side: float, half: float,
                  rng: np.random.Generator) -> Polygon | None:
    """A clearing whose frontage is [s, s+w] along the road, on one side of it, ``depth`` deep."""
    s1 = min(s + w, line.length)
    if s1 - s < 3:
        return None
    a, b = line.at(s), line.at(s1)
    u = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
    n = side * np.array([-u[1], u[0]])
    gap = half + rng.uniform(1.6, 2.6)
    kind = rng.random()
    if kind < 0.6:  # rectangle, a third of them turned away from the road
        coords = np.array([a + gap * n, b + gap * n, b + (gap + depth) * n, a + (gap + depth) * n])
        if rng.random() < 0.35:
            t = math.radians(rng.uniform(-20, 20))
            rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
            centre = coords.mean(axis=0)
            coords = (coords - centre) @ rot.T + centre
        return shapely.polygons(coords)
    if kind < 0.85:  # straight frontage, ragged back edge
        ts = np.linspace(1, 0, int(rng.integers(3, 7)))
        back = a + ts[:, None] * (b - a) + (gap + depth * rng.uniform(0.5, 1.2, len(ts)))[:, None] * n
        return shapely.polygons(np.vstack([a + gap * n, b + gap * n, back]))
    r = math.sqrt(w * depth / np.pi)
    centre = (a + b) / 2 + (gap + r + 0.5) * n
    return _blob(centre[0], centre[1], r, rng, aspect=rng.uniform(1.0, 1.5), angle=rng.uniform(0, np.pi))


def _clouds(size: int, rng: np.random.Generator, lay: _Layout) -> None:
    """A few small clouds with their shadows cast in one direction (never labelled)."""
    direction = rng.uniform(0, 2 * np.pi)
    distance = rng.uniform(8, 14)
    dx, dy = distance * math.cos(direction), distance * math.sin(direction)
    n_clouds = max(1, round(3 * (size / 512) ** 2))
    for _ in range(n_clouds):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        cloud = _blob(cx, cy, rng.uniform(3, 9), rng, aspect=rng.uniform(1.0, 1.5),
                      angle=rng.uniform(0, np.pi), rough=0.5)
        lay.clouds.append(cloud)
        lay.shadows.append(affinity.translate(cloud, dx, dy))


def _forest_samples(rng: np.random.Generator, lay: _Layout, free: np.ndarray,
                    busy: Sequence[BaseGeometry], fraction: float = 0.3) -> list[BaseGeometry]:
    """Forest sample polygons, cell by cell, 3 px away from anything that is not forest.

    Centres are drawn where the distance to the nearest non-forest pixel leaves room and
    each candidate is sized to that room, then all are checked exactly, in batches, against
    a static tree of everything else (and each other).

    Args:
        free: pixels of unclouded forest inside the footprint.
    """
    size, cell, batch = lay.size, 64, 25
    room = ndimage.distance_transform_edt(free) - 4.0  # pixel centres: keep a margin
    inner = lay.footprint.buffer(-2.0)
    shapely.prepare(inner)
    tree = shapely.STRtree(list(busy))
    samples = _Index()
    out: list[BaseGeometry] = []
    for j in range(0, size, cell):
        for i in range(0, size, cell):
            block = room[j:j + cell, i:i + cell]
            target = fraction * float(free[j:j + cell, i:i + cell].sum())
            rows, cols = np.nonzero(block >= 4.0)
            weight = block[rows, cols] / block[rows, cols].sum() if len(rows) else None
            area = 0.0
            for _ in range(4):
                if area >= target or len(rows) == 0:
                    break
                pick = rng.choice(len(rows), batch, p=weight)  # roomy places first
                cy, cx = j + rows[pick] + 0.5, i + cols[pick] + 0.5
                r = np.minimum(block[rows[pick], cols[pick]], 18.0) * rng.uniform(0.6, 1.0, batch)
                tilt = rng.uniform(0.35, 1.22, batch)  # diagonal angle: rectangle elongation
                rects = shapely.polygons(_rectangle_coords(
                    np.column_stack([cx, cy]), np.column_stack([2 * r * np.cos(tilt), 2 * r * np.sin(tilt)]),
                    rng.uniform(0, np.pi, batch)))
                aspect = rng.uniform(1.0, 1.5, batch)
                blobs = shapely.polygons(_blob_coords(cx, cy, r / (1.31 * aspect), aspect,
                                                      rng.uniform(0, np.pi, batch), rng))
                cands = np.where(rng.random(batch) < 0.6, rects, blobs)
                ok = shapely.contains(inner, cands)
                ok[tree.query(cands, predicate="dwithin", distance=3.0)[0]] = False
                for geom in cands[ok]:
                    if area >= target:
                        break
                    if geom.area < 30 or samples.hits(geom, 1.0):
                        continue
                    samples.add(geom)
                    out.append(geom)
                    area += geom.area
    return out


def _polygons(geom: BaseGeometry) -> BaseGeometry | None:
    """The polygonal part of a clipping result, or None when nothing of it is left."""
    parts: list[Polygon] = []
    for g in getattr(geom, "geoms", [geom]):
        if isinstance(g, Polygon) and g.area > 0:
            parts.append(g)
        elif isinstance(g, MultiPolygon):
            parts.extend(p for p in g.geoms if p.area > 0)
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else MultiPolygon(parts)


def _select_labels(rng: np.random.Generator, lay: _Layout, items: Sequence[tuple[str, BaseGeometry]],
                   omit: dict[str, float], crossing: int) -> None:
    """Label most objects, as a PRODES-like mapping would.

    Some are skipped (missed by the interpreter), none is drawn under a cloud or its
    shadow, and those reaching out of the footprint are clipped to it, except ``crossing``
    of them that are kept whole across the nodata border or the scene edge, as real
    polygons are.
    """
    avoid = _Index()
    for g in lay.clouds + lay.shadows:
        avoid.add(g)
    for name, geom in items:
        if rng.random() < omit.get(name, 0.0) or avoid.hits(geom, 1.0):
            continue
        inside = geom.intersection(lay.footprint).area / geom.area
        if inside >= 0.98:
            lay.labels.append((name, geom))
        elif inside >= 0.3 and crossing > 0:
            lay.labels.append((name, geom))
            crossing -= 1
        else:
            clipped = _polygons(geom.intersection(lay.footprint))
            if clipped is not None and clipped.area >= 15:
                lay.labels.append((name, clipped))


def _layout(size: int, rng: np.random.Generator) -> tuple[_Layout, np.ndarray, np.ndarray]:
    """Draw the whole scene in pixel coordinates; returns the layout, object ids and truth."""
    lay = _Layout(size, _footprint(size, rng))
    road_idx, water_idx, clear_idx = _Index(), _Index(), _Index()
    roads = _roads(size, rng, lay, road_idx)
    water = _water(size, rng, lay, road_idx, water_idx)
    cleared = _clearings(rng, lay, roads, road_idx, water_idx, clear_idx)
    _clouds(size, rng, lay)
    obj, truth = _burn_objects(lay)
    busy = road_idx.all() + water_idx.all() + clear_idx.all() + lay.clouds + lay.shadows
    free = (truth == FOREST) & (_burn([(lay.footprint, 1)], size, "uint8") == 1)
    free &= _burn(((g, 1) for g in lay.clouds + lay.shadows), size, "uint8") == 0
    forest = _forest_samples(rng, lay, free, busy)
    crossing = int(rng.integers(1, 3))
    items = ([("deforestation", g) for g in cleared] + [("water", g) for g in water]
             + [("forest", g) for g in forest])
    order = rng.permutation(len(items))
    _select_labels(rng, lay, [items[k] for k in order],
                   {"deforestation": 0.17, "water": 0.12, "forest": 0.0}, crossing)
    return lay, obj, truth


def _to_map(geom: BaseGeometry) -> BaseGeometry:
    """Pixel (column, row) coordinates → map coordinates of the demo grid."""
    return affinity.affine_transform(geom, [PIXEL, 0.0, 0.0, -PIXEL, ORIGIN[0], ORIGIN[1]])


def _burn(geoms: Iterable[tuple[BaseGeometry, int]], size: int, dtype: str = "int32") -> np.ndarray:
    """Rasterize pixel-space geometries moved to map coordinates, as the pipeline burns labels."""
    shapes = [(_to_map(g), v) for g, v in geoms if not g.is_empty]
    if not shapes:
        return np.zeros((size, size), dtype=dtype)
    return rasterio.features.rasterize(shapes, out_shape=(size, size), transform=TRANSFORM,
                                       fill=0, dtype=dtype)


def _burn_objects(lay: _Layout) -> tuple[np.ndarray, np.ndarray]:
    """Object ids (0 = forest background) and truth codes, water burnt last so it wins."""
    order = sorted(range(len(lay.objects)), key=lambda k: lay.objects[k].code == WATER)
    obj = _burn(((lay.objects[k].geom, k + 1) for k in order), lay.size)
    codes = np.array([FOREST] + [o.code for o in lay.objects], dtype=np.uint8)
    return obj, codes[obj]


# --------------------------------------------------------------------------- spectra


def _field(rng: np.random.Generator, size: int, sigma: float) -> np.ndarray:
    """Spatially correlated noise with unit standard deviation.

    Smooth fields are filtered on a coarser grid and interpolated back: the same look at a
    fraction of the cost on large scenes.
    """
    step = max(1, int(sigma // 4))
    n = -(-size // step) + 2
    f = ndimage.gaussian_filter(rng.standard_normal((n, n)), sigma / step, mode="reflect")
    if step > 1:
        f = ndimage.zoom(f, step, order=1)
    f = f[:size, :size]
    return ((f - f.mean()) / max(float(f.std()), 1e-12)).astype(np.float32)


def _soft_floor(x: np.ndarray, floor: float = 0.004) -> np.ndarray:
    """Keep reflectance positive without piling pixels up at one clipping value."""
    f = np.float32(floor)
    return np.where(x < f, f * np.exp((np.minimum(x, f) - f) / f), x).astype(np.float32)


def _render(lay: _Layout, obj: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Six bands of reflectance for the truth map, nodata outside the footprint."""
    size = lay.size
    table = np.vstack([_FOREST] + [o.mean for o in lay.objects]).astype(np.float32)
    amp = np.array([0.0] + [o.stripe_amp for o in lay.objects], dtype=np.float32)[obj]
    ang = np.array([0.0] + [o.stripe_angle for o in lay.objects], dtype=np.float32)[obj]
    period = np.array([5.0] + [o.stripe_period for o in lay.objects], dtype=np.float32)[obj]
    phase = np.array([0.0] + [o.stripe_phase for o in lay.objects], dtype=np.float32)[obj]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # ploughing/grazing stripes across each clearing, aligned with its road frontage
    stripes = amp * np.sin(2 * np.pi * (xx * np.cos(ang) + yy * np.sin(ang)) / period + phase)

    illumination = 1.0 + 0.05 * _field(rng, size, 12.0)  # terrain shading
    crown = _field(rng, size, 0.8)  # sunlit crowns and shaded gaps
    stand = _field(rng, size, 30.0)  # forest type variation
    patches = _field(rng, size, 2.0)  # soil and grass patchiness
    turbidity = _field(rng, size, 8.0)
    cloud_texture = _field(rng, size, 3.0)

    f32 = np.float32
    vegetated = ((truth == FOREST) | (truth == REGROWTH)).astype(f32)
    cleared = ((truth == DEFORESTATION) | (truth == ROAD)).astype(f32)
    water = (truth == WATER).astype(f32)
    shadow = _burn(((g, 1) for g in lay.shadows), size, "uint8").astype(f32)
    shadow = ndimage.gaussian_filter(shadow, 1.0) * shadow
    cloud = _burn(((g, 1) for g in lay.clouds), size, "uint8").astype(f32)
    cloud = np.clip(ndimage.gaussian_filter(cloud, 1.5) * f32(1.6), 0.0, 1.0) * cloud
    light = illumination * (f32(1) - f32(0.6) * shadow)
    canopy = vegetated * (f32(1) + f32(0.05) * stand)
    soil = cleared * (f32(1) + stripes + f32(0.08) * patches)
    cloud_top = cloud * (f32(1) + f32(0.08) * cloud_texture)
    other = f32(1) - vegetated - cleared

    bands = np.empty((6, size, size), dtype=f32)
    for b in range(6):
        texture = canopy * (f32(1) + f32(_CROWN[b]) * crown) + soil + other
        x = (table[obj, b] * texture + water * f32(0.4 * _TURBID[b]) * turbidity) * light
        x = x * (f32(1) - cloud) + cloud_top * f32(_CLOUD[b])
        x = ndimage.gaussian_filter(x, 0.5)  # point-spread function: mixed edge pixels
        x += f32(_NOISE_SD[b]) * rng.standard_normal((size, size), dtype=f32)
        bands[b] = _soft_floor(x)
    valid = _burn([(lay.footprint, 1)], size, "uint8").astype(bool)
    bands[:, ~valid] = NODATA
    return bands


def _generate(size: int, seed: int) -> tuple[np.ndarray, gpd.GeoDataFrame, np.ndarray]:
    """The image array, the labelled polygons and the land-cover truth for one (size, seed)."""
    rng = np.random.default_rng(seed)
    lay, obj, truth = _layout(size, rng)
    image = _render(lay, obj, truth, rng)
    labels = gpd.GeoDataFrame(
        {
            "class": [name for name, _ in lay.labels],
            "area_ha": [round(g.area * PIXEL * PIXEL / 10_000, 2) for _, g in lay.labels],
        },
        geometry=[_to_map(g) for _, g in lay.labels],
        crs=CRS,
    )
    return image, labels, truth


def demo_truth(size: int = 512, seed: int = 0) -> np.ndarray:
    """The full land-cover map behind the demo scene (codes FOREST..ROAD, no clouds).

    For checks and plots: the labels only cover part of it.
    """
    _, _, truth = _layout(int(size), np.random.default_rng(int(seed)))
    return truth


# --------------------------------------------------------------------------- writing


def _write_image(path: Path, image: np.ndarray, seed: int) -> None:
    """A tiled, deflate-compressed GeoTIFF with named bands, like an analysis-ready product."""
    size = image.shape[1]
    block = 256 if size > 256 else 128 if size > 128 else 64  # several tiles, even when small
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": image.shape[0],
        "dtype": "float32", "crs": CRS, "transform": TRANSFORM, "nodata": NODATA,
        "tiled": True, "blockxsize": block, "blockysize": block, "compress": "deflate",
        "predictor": 3, "interleave": "pixel",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(image)
        for b, name in enumerate(BAND_NAMES, start=1):
            dst.set_band_description(b, name)
        dst.update_tags(
            DESCRIPTION="deepgeo-runner demo: synthetic Landsat-8 OLI surface reflectance (B2-B7), "
                        "Amazon fishbone deforestation",
            SEED=str(seed),
        )


def _write_labels(path: Path, labels: gpd.GeoDataFrame) -> None:
    labels.to_file(path, driver="GPKG", layer=LAYER_NAME)


# Truth code → class id of the reference layer: roads are cleared forest (deforestation); a
# clearing regrowing (capoeira) keeps its truth code DEFORESTATION, as PRODES keeps it mapped.
_REFERENCE_IDS = {FOREST: 1, DEFORESTATION: 2, WATER: 3, REGROWTH: 2, ROAD: 2}


def reference_ids(truth: np.ndarray) -> np.ndarray:
    """Class ids 1..3 (forest, deforestation, water) of every pixel of the truth map."""
    lut = np.full(256, REFERENCE_NODATA, dtype=np.uint8)
    for code, class_id in _REFERENCE_IDS.items():
        lut[code] = class_id
    return lut[truth]


def _write_reference(path: Path, truth: np.ndarray) -> None:
    """The truth as a class-id GeoTIFF on the image grid, like a reference map a team would hold."""
    size = truth.shape[0]
    profile = {"driver": "GTiff", "width": size, "height": size, "count": 1, "dtype": "uint8", "crs": CRS,
               "transform": TRANSFORM, "nodata": REFERENCE_NODATA, "compress": "deflate"}
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(reference_ids(truth), 1)
        dst.set_band_description(1, "class")
        dst.update_tags(CLASSES=",".join(CLASSES),
                        DESCRIPTION="deepgeo-runner demo: the land-cover truth behind the scene, class ids "
                                    + ", ".join(f"{i} {c}" for i, c in enumerate(CLASSES, start=1)))
