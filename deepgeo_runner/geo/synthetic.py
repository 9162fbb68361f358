"""A built-in demo scene: Landsat-8-OLI-like reflectance over the Amazon with PRODES-like labels.

Deterministic and generated on the fly (no download). The land cover is drawn as vector
geometries first — roads with fishbone clearings, a meandering river, lakes, regrowth,
clouds and their shadows — and the spectra are synthesized from it, so the polygons of the
ground truth agree with the pixels. Classes overlap in every single band (noise, texture,
per-clearing variation, unlabelled look-alikes), so a network has to combine bands and
spatial context rather than threshold one band.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import rasterio.features
from affine import Affine
from scipy import ndimage
from shapely import affinity
from shapely.geometry import LineString, Point, Polygon, box
from shapely.ops import unary_union

BAND_NAMES = ("blue", "green", "red", "nir", "swir1", "swir2")  # OLI B2..B7
CLASSES = ("forest", "deforestation", "water")
CRS = "EPSG:32722"  # UTM 22S, Pará
PIXEL = 30.0
ORIGIN = (600_000.0, 9_600_000.0)
NODATA = -9999.0

# Mean surface reflectance per cover (blue, green, red, nir, swir1, swir2).
SPECTRA = {
    "forest": (0.025, 0.045, 0.032, 0.300, 0.145, 0.060),
    "bare": (0.070, 0.095, 0.115, 0.215, 0.300, 0.200),
    "pasture": (0.045, 0.075, 0.070, 0.265, 0.240, 0.140),
    "water": (0.050, 0.065, 0.050, 0.032, 0.016, 0.009),
    "regrowth": (0.032, 0.058, 0.050, 0.280, 0.200, 0.100),
    "cloud": (0.300, 0.310, 0.320, 0.380, 0.300, 0.220),
}
TRUTH = {"forest": 1, "deforestation": 2, "water": 3, "regrowth": 4, "cloud": 5, "shadow": 6}


@dataclass(frozen=True)
class DemoScene:
    """Paths of the generated demo files and what they hold."""

    image: Path
    labels: Path
    band_names: tuple[str, ...] = BAND_NAMES
    classes: tuple[str, ...] = CLASSES


def _to_map(geom, transform: Affine):
    """Pixel-space (col, row) geometry → map coordinates."""
    a, b, c, d, e, f = transform.a, transform.b, transform.c, transform.d, transform.e, transform.f
    return affinity.affine_transform(geom, [a, b, d, e, c, f])


def _layout(size: int, rng: np.random.Generator) -> dict[str, list]:
    """Vector land cover in pixel coordinates, spread over the whole scene."""
    scale = size / 512
    clearings, roads = [], []
    n_roads = max(2, round(3 * scale))
    for i in range(n_roads):  # roughly east-west roads at spread latitudes, fishbone clearings
        y0 = (i + 0.5) * size / n_roads + rng.uniform(-0.1, 0.1) * size / n_roads
        slope = rng.uniform(-0.15, 0.15)
        road = LineString([(-10, y0), (size + 10, y0 + slope * (size + 20))])
        roads.append(road)
        x = rng.uniform(0, 25)
        while x < size:
            width, depth = rng.uniform(8, 30), rng.uniform(10, 45) * min(1.0, 0.6 + scale / 2)
            side = rng.choice([-1, 1])
            y = y0 + slope * (x + 10)
            rect = box(x, y + side * 2, x + width, y + side * (2 + depth))
            rect = affinity.rotate(rect, rng.uniform(-12, 12), origin=(x, y))
            if rng.random() < 0.25:  # irregular clearing
                rect = rect.buffer(rng.uniform(2, 5)).simplify(1.5)
            clearings.append(rect)
            x += width + rng.uniform(3, 20)
    n_side = max(1, round(2 * scale))
    for _ in range(n_side):  # north-south feeder roads with their own clearings
        x0 = rng.uniform(0.1, 0.9) * size
        roads.append(LineString([(x0, -10), (x0 + rng.uniform(-30, 30), size + 10)]))
        for y in np.arange(rng.uniform(0, 30), size, rng.uniform(35, 60)):
            w, d = rng.uniform(8, 22), rng.uniform(10, 30)
            side = rng.choice([-1, 1])
            clearings.append(box(x0 + side * 2, y, x0 + side * (2 + d), y + w))
    t = np.linspace(-10, size + 10, 200)
    amplitude, wavelength = rng.uniform(0.05, 0.1) * size, rng.uniform(0.4, 0.7) * size
    river_x = rng.uniform(0.25, 0.75) * size + amplitude * np.sin(2 * np.pi * t / wavelength)
    river = LineString(np.column_stack([river_x, t])).buffer(rng.uniform(2.5, 4.5) * max(1.0, scale))
    lakes = []
    for _ in range(max(2, round(3 * scale))):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        axes = rng.uniform(8, 22, 2) * max(1.0, scale ** 0.5)
        lakes.append(affinity.scale(Point(cx, cy).buffer(1.0), *axes))
    regrowth = []
    for _ in range(max(4, round(10 * scale**2))):
        cx, cy = rng.uniform(0, 1, 2) * size
        regrowth.append(affinity.scale(Point(cx, cy).buffer(1.0), *rng.uniform(5, 14, 2)))
    clouds = []
    for _ in range(max(1, round(2 * scale**2))):
        cx, cy = rng.uniform(0.1, 0.9, 2) * size
        blob = unary_union([Point(cx + dx, cy + dy).buffer(r) for dx, dy, r in
                            zip(rng.normal(0, 6, 5), rng.normal(0, 6, 5), rng.uniform(4, 9, 5), strict=True)])
        clouds.append(blob)
    return {"clearings": clearings, "roads": roads, "river": [river], "lakes": lakes,
            "regrowth": regrowth, "clouds": clouds}


def _burn(shapes, size: int, value: int, out: np.ndarray) -> None:
    shapes = [(g, value) for g in shapes if not g.is_empty]
    if shapes:
        rasterio.features.rasterize(shapes, out=out, transform=Affine.identity(), dtype=np.uint8)


def _smooth_noise(rng: np.random.Generator, shape, sigma: float) -> np.ndarray:
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return (field / (field.std() + 1e-12)).astype(np.float32)


def _synthesize(size: int, layout: dict, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Reflectance bands (6, size, size) and the truth map from the vector layout."""
    truth = np.full((size, size), TRUTH["forest"], dtype=np.uint8)
    _burn(layout["regrowth"], size, TRUTH["regrowth"], truth)
    clearing_id = np.zeros((size, size), dtype=np.int32)
    for i, geom in enumerate(layout["clearings"], start=1):
        rasterio.features.rasterize([(geom, i)], out=clearing_id, transform=Affine.identity())
    truth[clearing_id > 0] = TRUTH["deforestation"]
    roads = np.zeros((size, size), dtype=np.uint8)
    _burn([r.buffer(0.8) for r in layout["roads"]], size, 1, roads)
    _burn(layout["river"] + layout["lakes"], size, TRUTH["water"], truth)
    bands = np.zeros((6, size, size), dtype=np.float32)
    canopy = _smooth_noise(rng, (size, size), 1.5)
    for cover, cls in (("forest", "forest"), ("regrowth", "regrowth"), ("water", "water")):
        mask = truth == TRUTH[cls]
        for b, mean in enumerate(SPECTRA[cover]):
            bands[b][mask] = mean
    # forest canopy texture: crowns brighten NIR and shade the visible bands
    forestish = (truth == TRUTH["forest"]) | (truth == TRUTH["regrowth"])
    bands[3][forestish] *= 1 + 0.08 * canopy[forestish]
    bands[2][forestish] *= 1 - 0.15 * canopy[forestish]
    # each clearing its own mix of bare soil and pasture, with stripes from the tractors
    n_clear = int(clearing_id.max())
    greenness = rng.uniform(0, 1, n_clear + 1)
    stripes = np.sin(np.arange(size) * rng.uniform(0.6, 1.2))[None, :] * 0.5 + 0.5
    mix = greenness[clearing_id] * (0.8 + 0.2 * stripes)
    clear = clearing_id > 0
    for b in range(6):
        value = (1 - mix) * SPECTRA["bare"][b] + mix * SPECTRA["pasture"][b]
        bands[b][clear] = value[clear]
    # turbid and clear water
    turbidity = _smooth_noise(rng, (size, size), 6)
    water = truth == TRUTH["water"]
    for b in range(3):
        bands[b][water] *= 1 + 0.25 * turbidity[water]
    bands[:, roads > 0] = np.asarray(SPECTRA["bare"], dtype=np.float32)[:, None] * 1.2
    # clouds (unlabelled) and their shadows, displaced towards the sun's antipode
    cloud = np.zeros((size, size), dtype=np.uint8)
    _burn(layout["clouds"], size, 1, cloud)
    shadow = np.roll(np.roll(cloud, 9, axis=0), 6, axis=1) & ~cloud.astype(bool)
    bands[:, shadow > 0] *= 0.45
    soft = ndimage.gaussian_filter(cloud.astype(np.float32), 2.0)
    for b, mean in enumerate(SPECTRA["cloud"]):
        bands[b] = bands[b] * (1 - soft) + mean * soft
    truth[cloud > 0], truth[shadow > 0] = TRUTH["cloud"], TRUTH["shadow"]
    # haze gradient, smooth per-band variation and sensor noise: no single band separates
    haze = np.linspace(0, 0.012, size, dtype=np.float32)[None, :]
    noise_std = (0.006, 0.008, 0.016, 0.025, 0.022, 0.016)
    for b in range(6):
        bands[b] += haze * (1.5 - b * 0.25) + 0.01 * _smooth_noise(rng, (size, size), 8)
        bands[b] += noise_std[b] * rng.standard_normal((size, size)).astype(np.float32)
    np.clip(bands, 0.001, 0.9, out=bands)
    return bands, truth


def _footprint(size: int, rng: np.random.Generator) -> Polygon:
    """A Landsat-like tilted scene footprint; outside it is nodata."""
    side = size * 0.95
    c = size / 2
    square = box(c - side / 2, c - side / 2, c + side / 2, c + side / 2)
    return affinity.rotate(square, rng.uniform(10, 13), origin=(c, c))


def _ground_truth(layout: dict, truth: np.ndarray, footprint: Polygon, rng: np.random.Generator):
    """PRODES-like polygons: most clearings and water bodies, samples of forest."""
    size = truth.shape[0]
    geoms, classes = [], []
    water = unary_union(layout["river"] + layout["lakes"])
    for g in layout["clearings"]:
        if rng.random() < 0.82:
            geoms.append(g.difference(water))
            classes.append("deforestation")
    segment = size / 6
    for k in range(6):
        if rng.random() < 0.75:
            geoms.append(layout["river"][0].intersection(box(-20, k * segment, size + 20, (k + 1) * segment)))
            classes.append("water")
    for lake in layout["lakes"]:
        geoms.append(lake)
        classes.append("water")
    forest_only = ndimage.binary_erosion(truth == TRUTH["forest"], iterations=2)
    table = np.zeros((size + 1, size + 1), dtype=np.int64)
    table[1:, 1:] = forest_only.cumsum(0).cumsum(1)
    wanted, tries = max(8, round(40 * (size / 512) ** 2)), 0
    placed = 0
    while placed < wanted and tries < 4000:
        tries += 1
        w, h = rng.integers(12, 40, 2)
        r, c = rng.integers(0, size - h), rng.integers(0, size - w)
        inside = table[r + h, c + w] - table[r, c + w] - table[r + h, c] + table[r, c]
        if inside == w * h and footprint.contains(box(c, r, c + w, r + h)):
            geoms.append(box(c, r, c + w, r + h))
            classes.append("forest")
            placed += 1
    keep = [(g, k) for g, k in zip(geoms, classes, strict=True) if not g.is_empty and g.area > 4]
    return [g for g, _ in keep], [k for _, k in keep]


def make_demo_scene(out_dir: Path | str, size: int = 512, seed: int = 0) -> DemoScene:
    """Generate the demo scene into ``out_dir`` once; later calls reuse the files."""
    out_dir = Path(out_dir)
    image, labels = out_dir / "demo_oli.tif", out_dir / "demo_prodes.gpkg"
    if image.exists() and labels.exists():
        return DemoScene(image, labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    layout = _layout(size, rng)
    bands, truth = _synthesize(size, layout, rng)
    footprint = _footprint(size, rng)
    outside = rasterio.features.geometry_mask([footprint], (size, size), Affine.identity())
    bands[:, outside] = NODATA
    transform = Affine(PIXEL, 0, ORIGIN[0], 0, -PIXEL, ORIGIN[1])
    geoms, classes = _ground_truth(layout, truth, footprint, rng)
    tag = f"{os.getpid()}.tmp"
    tmp_image, tmp_labels = out_dir / f".demo_oli.{tag}.tif", out_dir / f".demo_prodes.{tag}.gpkg"
    try:
        with rasterio.open(tmp_image, "w", driver="GTiff", width=size, height=size, count=6,
                           dtype="float32", crs=CRS, transform=transform, nodata=NODATA,
                           compress="deflate", tiled=size >= 256,
                           **({"blockxsize": 256, "blockysize": 256} if size >= 256 else {})) as dst:
            dst.write(bands)
            for i, name in enumerate(BAND_NAMES, start=1):
                dst.set_band_description(i, name)
            dst.update_tags(description="deepgeo-runner demo: synthetic Landsat-8 OLI surface reflectance")
        frame = gpd.GeoDataFrame({"class": classes},
                                 geometry=[_to_map(g, transform) for g in geoms], crs=CRS)
        frame.to_file(tmp_labels, driver="GPKG", layer="prodes")
        os.replace(tmp_image, image)
        os.replace(tmp_labels, labels)
    finally:
        tmp_image.unlink(missing_ok=True)
        tmp_labels.unlink(missing_ok=True)
    return DemoScene(image, labels)
