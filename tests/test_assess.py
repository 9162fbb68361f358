"""The assess stage: sample design, Stehman/Olofsson estimators, pixel areas, sample files.

The reference figures are those of Olofsson et al. (2014, Remote Sensing of Environment 148:42-57),
section 5 and Tables 5, 8 and 9: a map of 10 million 30 m pixels in four classes and a stratified
sample of 640 labelled pixels.
"""

from __future__ import annotations

import json
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import Geod
from shapely import box

from deepgeo_runner.assess.area import pixel_area
from deepgeo_runner.assess.design import allocate, sample_size, select_ordinals
from deepgeo_runner.config.schema import AssessConfig, DataConfig
from deepgeo_runner.core.errors import ConfigError, InputDataError
from deepgeo_runner.geo.raster_io import Grid, write_raster
from deepgeo_runner.pipeline.assess import SAMPLE_FILE, assess_map

UTM = "EPSG:32722"
OLOFSSON_CLASSES = ["deforestation", "forest_gain", "stable_forest", "stable_nonforest"]
OLOFSSON_PIXELS = [200_000, 150_000, 3_200_000, 6_450_000]
OLOFSSON_COUNTS = np.array([[66, 0, 5, 4], [0, 55, 8, 12], [1, 0, 153, 11], [2, 1, 9, 313]])  # Table 8


def _tags(names: list[str]) -> dict[str, str]:
    return {f"class_{i}": n for i, n in enumerate(names, start=1)}


def _write_map(path: Path, values: np.ndarray, names: list[str], crs: str = UTM,
               transform: Affine | None = None) -> Grid:
    grid = Grid(rasterio.crs.CRS.from_user_input(crs), transform or Affine(30, 0, 600_000, 0, -30, 9_600_000),
                values.shape[1], values.shape[0])
    write_raster(path, values.astype(np.uint8), grid, 255, ["class"], tags=_tags(names))
    return grid


def _points(grid: Grid, rows: np.ndarray, cols: np.ndarray, **columns) -> gpd.GeoDataFrame:
    x, y = grid.transform * (cols + 0.5, rows + 0.5)
    return gpd.GeoDataFrame(columns, geometry=gpd.points_from_xy(x, y), crs=grid.crs)


def _data(classes: list[str], **kw) -> DataConfig:
    return DataConfig(name="test", classes=classes, **kw)


# ------------------------------------------------------------------------------ Olofsson et al. (2014)


@pytest.fixture(scope="module")
def olofsson_run(tmp_path_factory) -> dict:
    """The worked example as files: the 10-Mpx map and the 640 labelled points, through the stage."""
    tmp = tmp_path_factory.mktemp("olofsson")
    height, width = 2000, 5000
    values = np.repeat(np.arange(1, 5, dtype=np.uint8), OLOFSSON_PIXELS).reshape(height, width)
    grid = _write_map(tmp / "map.tif", values, OLOFSSON_CLASSES)
    rng = np.random.default_rng(0)
    starts = np.cumsum([0, *OLOFSSON_PIXELS])
    flat, maps, refs = [], [], []
    for i, name in enumerate(OLOFSSON_CLASSES):
        n_i = int(OLOFSSON_COUNTS[i].sum())
        flat.append(starts[i] + rng.choice(OLOFSSON_PIXELS[i], n_i, replace=False))
        maps += [name] * n_i
        refs += [OLOFSSON_CLASSES[j] for j in range(4) for _ in range(OLOFSSON_COUNTS[i, j])]
    flat = np.concatenate(flat)
    labelled = _points(grid, flat // width, flat % width, point_id=np.arange(1, len(flat) + 1),
                       map_class=maps, ref_class=refs)
    labelled.to_file(tmp / "labelled.gpkg", driver="GPKG")
    out = assess_map(tmp / "map.tif", tmp, AssessConfig(sample=str(tmp / "labelled.gpkg")),
                     _data(OLOFSSON_CLASSES), seed=0)
    return json.loads(Path(out).read_text())


def test_olofsson_example_deforestation_to_the_hectare(olofsson_run):
    deforestation = olofsson_run["per_class"]["deforestation"]
    low, high = deforestation["area_ci95_ha"]
    assert round(deforestation["area_ha"]) == 21_158
    assert round((high - low) / 2) == 6_158
    assert deforestation["mapped_area_ha"] == pytest.approx(18_000)
    assert round(deforestation["users_accuracy"], 2) == 0.88
    assert round(deforestation["producers_accuracy"], 2) == 0.75
    assert round(olofsson_run["overall_accuracy"]["estimate"], 2) == 0.95


def test_olofsson_example_every_published_figure(olofsson_run):
    per_class = olofsson_run["per_class"]
    half = {k: (v["area_ci95_ha"][1] - v["area_ci95_ha"][0]) / 2 for k, v in per_class.items()}
    assert [round(per_class[c]["area_ha"]) for c in OLOFSSON_CLASSES] == [21_158, 11_686, 285_770, 581_386]
    assert [round(half[c]) for c in OLOFSSON_CLASSES] == [6_158, 3_756, 15_510, 16_282]
    ua = [per_class[c]["users_accuracy"] for c in OLOFSSON_CLASSES]
    ua_hw = [1.96 * per_class[c]["users_accuracy_se"] for c in OLOFSSON_CLASSES]
    pa = [per_class[c]["producers_accuracy"] for c in OLOFSSON_CLASSES]
    pa_hw = [1.96 * per_class[c]["producers_accuracy_se"] for c in OLOFSSON_CLASSES]
    assert np.round(ua, 2).tolist() == [0.88, 0.73, 0.93, 0.96]
    assert np.round(ua_hw, 2).tolist() == [0.07, 0.10, 0.04, 0.02]
    assert np.round(pa, 2).tolist() == [0.75, 0.85, 0.93, 0.96]
    # printed 0.23 and 0.01 for forest gain and stable non-forest; their own eq. 7 gives 0.254 and 0.018
    assert np.round(pa_hw, 2).tolist() == [0.21, 0.25, 0.03, 0.02]
    oa = olofsson_run["overall_accuracy"]
    assert round(1.96 * oa["se"], 2) == 0.02
    assert oa["ci95"] == pytest.approx([oa["estimate"] - 1.96 * oa["se"], oa["estimate"] + 1.96 * oa["se"]])
    table9 = [[0.0176, 0, 0.0013, 0.0011], [0, 0.0110, 0.0016, 0.0024],
              [0.0019, 0, 0.2967, 0.0213], [0.0040, 0.0020, 0.0179, 0.6212]]
    assert np.round(olofsson_run["error_matrix"]["area_proportions"], 4).tolist() == table9
    assert olofsson_run["error_matrix"]["sample_counts"] == OLOFSSON_COUNTS.tolist()
    design = olofsson_run["design"]
    assert design["pixel_area_ha"] == pytest.approx(0.09)
    assert [design["strata_sizes"][c]["pixels"] for c in OLOFSSON_CLASSES] == OLOFSSON_PIXELS
    assert [design["strata_sizes"][c]["sample"] for c in OLOFSSON_CLASSES] == [75, 75, 165, 325]


def test_olofsson_sample_size_and_allocations():
    """Section 5.1.1 / Table 5: n = 641 for S(Ô) = 0.01 and U = 0.7, 0.6, 0.9, 0.95."""
    weights = np.array(OLOFSSON_PIXELS) / sum(OLOFSSON_PIXELS)
    n = sample_size(weights, [0.7, 0.6, 0.9, 0.95], 0.01)
    assert n == 641
    assert allocate(n, OLOFSSON_PIXELS, "proportional").tolist() == [13, 10, 205, 413]
    assert allocate(640, OLOFSSON_PIXELS, "equal").tolist() == [160, 160, 160, 160]
    # 100 for each rare class, the remaining 441 proportionally to the stable classes
    assert allocate(n, OLOFSSON_PIXELS, "min_per_stratum", 100).tolist() == [100, 100, 146, 295]


# ------------------------------------------------------------------------------ sample design


def test_allocations_respect_sizes_minima_and_totals():
    pixels = [5, 40, 1_000, 100_000, 0]
    for method in ("proportional", "equal", "min_per_stratum"):
        sizes = allocate(300, pixels, method, 30)
        assert sizes.sum() == 300 and (sizes <= pixels).all() and sizes[-1] == 0, method
    sizes = allocate(300, pixels, "min_per_stratum", 30)
    assert sizes[0] == 5 and sizes[1] == 30 and sizes[2] == 30  # all of a tiny stratum, else the minimum
    assert sizes[3] == 235
    equal = allocate(300, pixels, "equal")
    assert equal[:2].tolist() == [5, 40] and abs(int(equal[2]) - int(equal[3])) <= 1  # capped strata pass on
    assert allocate(10, [1_000, 1_000], "min_per_stratum", 50).tolist() == [50, 50]  # minima outrank the total


def test_selection_is_seeded_and_without_replacement():
    a = select_ordinals([1_000, 50, 3], [20, 50, 2], seed=7)
    b = select_ordinals([1_000, 50, 3], [20, 50, 2], seed=7)
    c = select_ordinals([1_000, 50, 3], [20, 50, 2], seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])
    assert sorted(a[1].tolist()) == list(range(50))  # a census of a stratum takes every pixel once
    assert len(set(a[0].tolist())) == 20 and a[0].max() < 1_000


@pytest.fixture
def small_map(tmp_path) -> tuple[Path, Grid, np.ndarray]:
    """120 × 90 px: a rare class (1), two common ones and a nodata strip."""
    rng = np.random.default_rng(1)
    values = rng.choice([1, 2, 3], size=(120, 90), p=[0.03, 0.37, 0.60]).astype(np.uint8)
    values[:, :5] = 255
    grid = _write_map(tmp_path / "map.tif", values, ["deforestation", "forest", "nonforest"])
    return tmp_path / "map.tif", grid, values


def test_design_writes_points_on_pixel_centres_inside_their_stratum(small_map, tmp_path):
    path, grid, values = small_map
    options = AssessConfig(target_se=0.02, users_accuracy={"deforestation": 0.7, "forest": 0.9, "nonforest": 0.9},
                           min_per_stratum=40)
    assert assess_map(path, tmp_path / "a", options, _data(["deforestation", "forest", "nonforest"]), 5) is None
    sample = gpd.read_file(tmp_path / "a" / SAMPLE_FILE)
    assert sample.crs == grid.crs and sample["ref_class"].isna().all()
    cols, rows = ~grid.transform * (sample.geometry.x.to_numpy(), sample.geometry.y.to_numpy())
    assert np.allclose(rows % 1, 0.5) and np.allclose(cols % 1, 0.5)  # pixel centres
    rows, cols = rows.astype(int), cols.astype(int)
    names = np.array(["", "deforestation", "forest", "nonforest"])
    assert (names[values[rows, cols]] == sample["map_class"].to_numpy()).all()
    assert (sample["map_class"] == sample["stratum"]).all()
    assert len(set(zip(rows.tolist(), cols.tolist(), strict=True))) == len(sample)  # without replacement
    counts = [int((values == v).sum()) for v in (1, 2, 3)]
    weights = np.array(counts) / sum(counts)
    n = sample_size(weights, [0.7, 0.9, 0.9], 0.02)
    expected = allocate(n, counts, "min_per_stratum", 40)
    assert sample["stratum"].value_counts()[["deforestation", "forest", "nonforest"]].tolist() == expected.tolist()
    csv = (tmp_path / "a" / "assessment_sample.csv").read_text().splitlines()
    assert csv[0].split(",")[:4] == ["point_id", "stratum", "map_class", "ref_class"] and len(csv) == len(sample) + 1
    # the same seed draws the same points; another seed others
    assess_map(path, tmp_path / "b", options, _data(["deforestation", "forest", "nonforest"]), 5)
    assess_map(path, tmp_path / "c", options, _data(["deforestation", "forest", "nonforest"]), 6)
    same = gpd.read_file(tmp_path / "b" / SAMPLE_FILE)
    other = gpd.read_file(tmp_path / "c" / SAMPLE_FILE)
    assert same.geometry.equals(sample.geometry) and not other.geometry.equals(sample.geometry)


# ------------------------------------------------------------------------------ strata ≠ map classes


def test_strata_other_than_map_classes_against_a_hand_computation(tmp_path):
    """Two strata (rows 0-5: 60 px, rows 6-9: 40 px) across a map of classes A and B.

    Units (map, reference): stratum 1 (A,A) (A,B) (B,B) (A,A); stratum 2 (B,B) (B,A) (A,A).
    By hand (Stehman 2014, eqs. 2-3 and 25-27, no finite population correction):
      overall accuracy = (60·3/4 + 40·2/3) / 100 = 0.716667,
      V = (60²·(1/4)/4 + 40²·(1/3)/3) / 100² = 0.0402778;
      user's accuracy of A = (60·2/4 + 40·1/3) / (60·3/4 + 40·1/3) = 43.333 / 58.333 = 0.742857;
      area of A (reference) = (60·2/4 + 40·2/3) px × 0.09 ha = 5.1 ha;
      producer's accuracy of B = (60·1/4 + 40·1/3) / (60·2/4 + 40·1/3) = 28.333 / 43.333 = 0.653846.
    """
    values = np.full((10, 10), 2, dtype=np.uint8)
    units = [((0, 0), 1, "A"), ((1, 1), 1, "B"), ((2, 2), 2, "B"), ((3, 3), 1, "A"),
             ((6, 0), 2, "B"), ((7, 1), 2, "A"), ((8, 2), 1, "A")]
    for (r, c), v, _ in units:
        values[r, c] = v
    grid = _write_map(tmp_path / "map.tif", values, ["A", "B"])
    strata = np.where(np.arange(10)[:, None] < 6, 1, 2).repeat(10, axis=1).astype(np.uint8)
    write_raster(tmp_path / "strata.tif", strata, grid, 0, ["stratum"], tags={"class_1": "north", "class_2": "south"})
    rows = np.array([u[0][0] for u in units])
    cols = np.array([u[0][1] for u in units])
    _points(grid, rows, cols, ref_class=[u[2] for u in units]).to_file(tmp_path / "labels.gpkg")
    out = assess_map(tmp_path / "map.tif", tmp_path, AssessConfig(strata=str(tmp_path / "strata.tif"),
                                                                    sample=str(tmp_path / "labels.gpkg")),
                     _data(["A", "B"]), 0)
    result = json.loads(Path(out).read_text())
    oa = result["overall_accuracy"]
    assert oa["estimate"] == pytest.approx(0.716667, abs=1e-6)
    assert oa["se"] == pytest.approx(np.sqrt(0.0402778), abs=1e-6)
    a, b = result["per_class"]["A"], result["per_class"]["B"]
    assert a["users_accuracy"] == pytest.approx(43.3333 / 58.3333, abs=1e-5)
    assert b["producers_accuracy"] == pytest.approx(28.3333 / 43.3333, abs=1e-5)
    assert a["area_ha"] == pytest.approx(5.1)
    assert a["area_ha"] + b["area_ha"] == pytest.approx(9.0)  # the areas share the whole map
    assert a["mapped_area_ha"] == pytest.approx(0.09 * int((values == 1).sum()))
    # user's accuracy of A, variance from the textbook form s²_y + R² s²_x − 2R s_xy per stratum
    ratio = a["users_accuracy"]
    var = 0.0
    for n_pixels, y, x in ((60, [1, 0, 0, 1], [1, 1, 0, 1]), (40, [0, 0, 1], [0, 0, 1])):
        cov = np.cov(np.array([y, x], dtype=float))
        var += n_pixels**2 * (cov[0, 0] + ratio**2 * cov[1, 1] - 2 * ratio * cov[0, 1]) / len(y)
    assert a["users_accuracy_se"] == pytest.approx(np.sqrt(var) / 58.3333, rel=1e-5)
    assert result["design"]["strata_sizes"] == {
        "north": {"pixels": 60, "area_ha": pytest.approx(5.4), "weight": pytest.approx(0.6), "sample": 4},
        "south": {"pixels": 40, "area_ha": pytest.approx(3.6), "weight": pytest.approx(0.4), "sample": 3}}


# ------------------------------------------------------------------------------ pixel areas


def test_geographic_pixel_areas_sum_to_the_ellipsoid():
    """A global 1° grid covers the WGS 84 ellipsoid: 510,065,621.724 km² (its authalic sphere)."""
    area = pixel_area("EPSG:4326", Affine(1, 0, -180, 0, -1, 90), 180)
    assert area.crs_kind == "geographic" and not area.constant
    assert area.row_ha.sum() * 360 * 1e-2 == pytest.approx(510_065_621.724, rel=1e-9)
    assert area.row_ha[0] < area.row_ha[89] / 50  # polar cells are slivers


def test_geographic_pixel_area_matches_a_geodesic_polygon():
    """One 0.25° cell at 10°S, against pyproj's geodesic area of the same cell (edges densified)."""
    area = pixel_area("EPSG:4326", Affine(0.25, 0, -50, 0, -0.25, -10), 1).row_ha[0]
    lons = np.r_[np.linspace(-50, -49.75, 500), np.linspace(-49.75, -50, 500)]
    lats = np.r_[np.full(500, -10.0), np.full(500, -10.25)]
    geodesic, _ = Geod(ellps="WGS84").polygon_area_perimeter(lons, lats)
    assert area == pytest.approx(abs(geodesic) / 1e4, rel=1e-6)


def test_projected_pixel_area_uses_the_crs_unit():
    assert pixel_area(UTM, Affine(30, 0, 0, 0, -30, 0), 2).row_ha.tolist() == [0.09, 0.09]
    feet = pixel_area("EPSG:2263", Affine(100, 0, 0, 0, -100, 0), 1).row_ha[0]  # US survey feet
    assert feet == pytest.approx(100 * 100 * (1200 / 3937) ** 2 / 1e4)


def test_geographic_map_areas_follow_latitude(tmp_path):
    """A 0.01° map from 0° to 60°S: mapped hectares are the ellipsoidal areas, not pixels × a constant."""
    values = np.ones((6000, 2), dtype=np.uint8)
    values[3000:] = 2
    _write_map(tmp_path / "map.tif", values, ["north", "south"], "EPSG:4326", Affine(0.01, 0, -50, 0, -0.01, 0))
    rows = np.array([10, 2000, 2500, 4000, 5000, 5900])
    grid = Grid.of(tmp_path / "map.tif")
    _points(grid, rows, np.zeros(6, dtype=int), ref_class=["north", "north", "south", "south", "south", "south"]
            ).to_file(tmp_path / "labels.gpkg")
    out = assess_map(tmp_path / "map.tif", tmp_path, AssessConfig(sample=str(tmp_path / "labels.gpkg")),
                     _data(["north", "south"]), 0)
    result = json.loads(Path(out).read_text())
    geod = Geod(ellps="WGS84")

    def band(lat0: float, lat1: float) -> float:
        lons = np.r_[np.linspace(-50, -49.98, 50), np.linspace(-49.98, -50, 50)]
        lats = np.r_[np.full(50, lat0), np.full(50, lat1)]
        return abs(geod.polygon_area_perimeter(lons, lats)[0]) / 1e4

    north, south = result["per_class"]["north"], result["per_class"]["south"]
    assert north["mapped_area_ha"] == pytest.approx(band(0, -30), rel=1e-5)
    assert south["mapped_area_ha"] == pytest.approx(band(-30, -60), rel=1e-5)
    assert south["mapped_area_ha"] < 0.8 * north["mapped_area_ha"]
    total = north["mapped_area_ha"] + south["mapped_area_ha"]
    assert north["area_ha"] + south["area_ha"] == pytest.approx(total)
    assert result["design"]["crs_kind"] == "geographic" and "pixel_area_ha_range" in result["design"]


# ------------------------------------------------------------------------------ labels and errors


def test_reference_layer_labels_the_sample_like_the_training_labels(small_map, tmp_path):
    path, grid, values = small_map
    polygons = gpd.GeoDataFrame({"class": ["deforestation", "forest"]}, geometry=[
        box(*(grid.transform * (5, 60)), *(grid.transform * (90, 0))),
        box(*(grid.transform * (5, 120)), *(grid.transform * (45, 60)))], crs=grid.crs)
    polygons.to_file(tmp_path / "reference.gpkg")
    data = _data(["deforestation", "forest", "nonforest"])
    out = assess_map(path, tmp_path, AssessConfig(reference=str(tmp_path / "reference.gpkg"), min_per_stratum=20),
                     data, 3)
    result = json.loads(Path(out).read_text())
    sample = gpd.read_file(tmp_path / SAMPLE_FILE)
    rows = ((grid.transform.f - sample.geometry.y) / 30).astype(int)
    cols = ((sample.geometry.x - grid.transform.c) / 30).astype(int)
    # the population is where the reference has a class (background is ignored): every point is labelled
    expected = np.where(rows < 60, "deforestation", np.where(cols < 45, "forest", None))
    assert (sample["ref_class"].to_numpy() == expected).all() and result["design"]["unlabelled_points"] == 0
    domain = np.zeros(values.shape, dtype=bool)
    domain[:60, 5:] = True
    domain[60:, 5:45] = True
    for value, name in ((1, "deforestation"), (2, "forest"), (3, "nonforest")):
        assert result["per_class"][name]["mapped_area_ha"] == pytest.approx(0.09 * ((values == value) & domain).sum())
    assert result["per_class"]["nonforest"]["producers_accuracy"] is None  # never the reference class
    assert result["design"]["total_area_ha"] == pytest.approx(0.09 * domain.sum())


def test_labelled_sample_errors_name_the_rows(small_map, tmp_path):
    path, grid, _ = small_map
    data = _data(["deforestation", "forest", "nonforest"])
    assess_map(path, tmp_path, AssessConfig(), data, 0)
    sample = gpd.read_file(tmp_path / SAMPLE_FILE)
    sample["ref_class"] = sample["map_class"]
    sample.loc[[2, 7], "ref_class"] = None
    sample.to_file(tmp_path / "empty.gpkg")
    with pytest.raises(InputDataError, match=r"2 of \d+ points have no ref_class \(point_id 3, 8\)"):
        assess_map(path, tmp_path, AssessConfig(sample=str(tmp_path / "empty.gpkg")), data, 0)
    sample["ref_class"] = sample["map_class"]
    sample.loc[4, "ref_class"] = "defforestation"
    sample.to_file(tmp_path / "typo.gpkg")
    with pytest.raises(InputDataError, match=r"5: 'defforestation'.*one of \['deforestation'"):
        assess_map(path, tmp_path, AssessConfig(sample=str(tmp_path / "typo.gpkg")), data, 0)
    sample["ref_class"] = sample["map_class"]
    sample.loc[0, "stratum"] = "nonforest" if sample.loc[0, "stratum"] != "nonforest" else "forest"
    sample.to_file(tmp_path / "strata.gpkg")
    with pytest.raises(InputDataError, match=r"at points \['1'\] the stratum differs.*assess.strata"):
        assess_map(path, tmp_path, AssessConfig(sample=str(tmp_path / "strata.gpkg")), data, 0)
    # the CSV twin, labelled in a spreadsheet, is read as well as the GeoPackage
    table = sample.drop(columns="geometry")
    table["ref_class"] = table["stratum"] = table["map_class"]
    table.to_csv(tmp_path / "labelled.csv", index=False)
    out = assess_map(path, tmp_path, AssessConfig(sample=str(tmp_path / "labelled.csv")), data, 0)
    assert json.loads(Path(out).read_text())["overall_accuracy"]["estimate"] == pytest.approx(1.0)


def test_config_checks():
    with pytest.raises(ConfigError, match="assess.target_se"):
        AssessConfig(target_se=0)
    with pytest.raises(ConfigError, match="assess.users_accuracy"):
        AssessConfig(users_accuracy={"forest": 1.2})
    with pytest.raises(ConfigError, match="both set"):
        AssessConfig(reference="a.gpkg", sample="b.gpkg")


def test_a_stratum_sampled_completely_adds_no_variance():
    """A class of one pixel gets one unit (allocation caps at its pixels): that stratum is a census,
    so the other strata's variances stand instead of every interval becoming undefined."""
    from deepgeo_runner.assess.estimate import StratifiedSample, assess_sample

    assert allocate(300, [5000, 4000, 1], "min_per_stratum", 50).tolist()[-1] == 1
    m = np.array([0] * 10 + [1] * 10 + [2])
    r = m.copy()
    r[0], r[15] = 1, 0
    sample = StratifiedSample(stratum=m, map_class=m, ref_class=r, unit_area=np.ones(21),
                              stratum_pixels=np.array([100, 100, 1]))
    result = assess_sample(sample, 3)
    w = 100 / 201
    assert result.overall.se == pytest.approx(np.sqrt(2 * w**2 * 0.9 * 0.1 / 9))  # Olofsson eq. 5, strata 0 and 1
    assert [u.se for u in result.users] == pytest.approx([0.1, 0.1, 0.0])
    one = StratifiedSample(stratum=m, map_class=m, ref_class=r, unit_area=np.ones(21),
                           stratum_pixels=np.array([100, 100, 7]))  # one unit of 7 pixels: unknown
    assert assess_sample(one, 3).overall.se is None


def test_a_perfect_sample_logs_plus_minus_zero_not_nan(tmp_path, caplog):
    """A map that agrees with every reference point has SE 0: the log said '± nan'."""
    import logging

    from deepgeo_runner.pipeline.assess import plus_minus

    values = np.repeat(np.array([1, 2], dtype=np.uint8), 30 * 20).reshape(40, 30)
    grid = _write_map(tmp_path / "map.tif", values, ["forest", "nonforest"])
    polygons = gpd.GeoDataFrame({"class": ["forest", "nonforest"]}, geometry=[
        box(*(grid.transform * (0, 20)), *(grid.transform * (30, 0))),
        box(*(grid.transform * (0, 40)), *(grid.transform * (30, 20)))], crs=grid.crs)
    polygons.to_file(tmp_path / "reference.gpkg")
    with caplog.at_level(logging.INFO, logger="deepgeo_runner"):
        out = assess_map(tmp_path / "map.tif", tmp_path, AssessConfig(reference=str(tmp_path / "reference.gpkg"),
                                                                      min_per_stratum=10),
                         _data(["forest", "nonforest"]), 0)
    overall = json.loads(Path(out).read_text())["overall_accuracy"]
    assert overall["estimate"] == 1.0 and overall["se"] == 0.0
    assert "overall accuracy 1.000 ± 0 (95 %)" in caplog.text and "nan" not in caplog.text
    assert plus_minus(0.9, 0.01) == "0.900 ± 0.020" and plus_minus(0.0, None) == "0.000 ± n/a"
    assert plus_minus(None, None) == "n/a"
