import geopandas as gpd
import numpy as np
import pytest
import rasterio

from deepgeo_runner.core.errors import InputDataError
from deepgeo_runner.geo.raster_io import Grid
from deepgeo_runner.geo.rasterize import NODATA, read_labels
from deepgeo_runner.stages.labels import rasterize_labels
from tests.helpers import pixel_box, write_image


def test_vector_classes_get_ids_in_configured_order(tiny_scene):
    grid = Grid.of(tiny_scene["image"])
    ids = read_labels(tiny_scene["labels"], grid, "class", ["forest", "clearing"])
    assert ids.dtype == np.uint8 and ids.shape == (48, 48)
    assert (ids[8:40, 2:20] == 1).all()       # forest polygon
    assert (ids[8:40, 28:46] == 2).all()      # clearing polygon
    assert (ids[0:6, 40:48] == 2).all()       # polygon crossing the edge, clipped
    assert (ids[44:47, 0:4] == 0).all()       # 'water' is not a class of interest
    reordered = read_labels(tiny_scene["labels"], grid, "class", ["clearing", "forest"])
    assert (reordered[8:40, 2:20] == 2).all()


def test_overlapping_polygons_last_listed_class_wins(tmp_path, tiny_scene):
    layer = gpd.GeoDataFrame({"class": ["b", "a"]}, geometry=[pixel_box(0, 0, 10, 10), pixel_box(5, 5, 15, 15)],
                             crs="EPSG:32722")
    path = tmp_path / "overlap.geojson"
    layer.to_file(path, driver="GeoJSON")
    ids = read_labels(path, Grid.of(tiny_scene["image"]), "class", ["a", "b"])
    assert (ids[5:10, 5:10] == 2).all()  # 'b' listed last
    assert (ids[10:15, 10:15] == 1).all()


def test_vector_in_another_crs_is_reprojected(tmp_path, tiny_scene):
    layer = gpd.read_file(tiny_scene["labels"]).to_crs("EPSG:4326")
    path = tmp_path / "labels_wgs84.gpkg"
    layer.to_file(path, driver="GPKG")
    grid = Grid.of(tiny_scene["image"])
    same = read_labels(tiny_scene["labels"], grid, "class", ["forest", "clearing"])
    other = read_labels(path, grid, "class", ["forest", "clearing"])
    assert (same == other).mean() > 0.99  # boundary pixels may differ by reprojection


def test_label_raster_is_recoded_and_nodata_kept(tmp_path, tiny_scene):
    codes = np.zeros((1, 48, 48), dtype=np.uint8)
    codes[0, :10] = 7
    codes[0, 10:20] = 3
    codes[0, 40:] = 250  # nodata of the label raster
    path = write_image(tmp_path / "codes.tif", codes, nodata=250)
    ids = read_labels(path, Grid.of(tiny_scene["image"]), "class", ["x", "y"], class_values=[3, 7])
    assert (ids[:10] == 2).all() and (ids[10:20] == 1).all()
    assert (ids[20:40] == 0).all() and (ids[40:] == NODATA).all()


def test_errors_name_the_file_and_the_fix(tmp_path, tiny_scene):
    grid = Grid.of(tiny_scene["image"])
    with pytest.raises(InputDataError, match="no column 'label'"):
        read_labels(tiny_scene["labels"], grid, "label", ["forest"])
    with pytest.raises(InputDataError, match="none of the classes"):
        read_labels(tiny_scene["labels"], grid, "class", ["pasture"])
    with pytest.raises(InputDataError, match="not found"):
        read_labels(tmp_path / "missing.gpkg", grid, "class", ["forest"])
    (tmp_path / "labels.csv").write_text("x")
    with pytest.raises(InputDataError, match="unknown format"):
        read_labels(tmp_path / "labels.csv", grid, "class", ["forest"])


def test_rasterize_stage_writes_georeferenced_colour_tabled_labels(tmp_path, tiny_scene):
    out = rasterize_labels(tiny_scene["labels"], tiny_scene["image"], tmp_path / "labels.tif",
                           ["forest", "clearing"], ["#00ff00", "#ff0000"])
    with rasterio.open(out) as src, rasterio.open(tiny_scene["image"]) as img:
        assert src.crs == img.crs and src.transform == img.transform and src.shape == img.shape
        assert src.nodata == NODATA
        ids = src.read(1)
        assert (ids[:4, :4] == NODATA).all()  # the image's nodata corner
        assert src.colormap(1)[1][:3] == (0, 255, 0)
        assert src.tags()["class_2"] == "clearing"


def test_class_groups_other_classes_and_all_touched(tmp_path, tiny_scene):
    grid = Grid.of(tiny_scene["image"])
    layer = gpd.GeoDataFrame(
        {"class": ["clearcut", "degradation", "forest", "river"]},
        geometry=[pixel_box(0, 0, 10, 10), pixel_box(0, 20, 10, 30), pixel_box(20, 0, 30, 10),
                  pixel_box(20, 20, 30, 30)],
        crs="EPSG:32722",
    )
    path = tmp_path / "groups.geojson"
    layer.to_file(path, driver="GeoJSON")
    ids = read_labels(path, grid, "class", ["forest", "deforestation"],
                      class_groups={"deforestation": ["clearcut", "degradation"]})
    assert (ids[0:10, 0:10] == 2).all() and (ids[0:10, 20:30] == 2).all() and (ids[20:30, 0:10] == 1).all()
    assert (ids[20:30, 20:30] == 0).all()  # 'river': background by default
    ignored = read_labels(path, grid, "class", ["forest"], others="ignore")
    assert (ignored[20:30, 20:30] == NODATA).all() and (ignored[0:10, 0:10] == NODATA).all()
    assert (ignored[20:30, 0:10] == 1).all() and (ignored[40:, 40:] == 0).all()  # unlabelled stays 0
    # a thin diagonal polygon: all_touched burns every pixel it crosses
    from shapely.geometry import LineString

    from tests.helpers import ORIGIN, PIXEL
    line = LineString([(ORIGIN[0] + 2 * PIXEL, ORIGIN[1] - 40 * PIXEL),
                       (ORIGIN[0] + 40 * PIXEL, ORIGIN[1] - 44 * PIXEL)]).buffer(1.0)
    thin = tmp_path / "thin.geojson"
    gpd.GeoDataFrame({"class": ["road"]}, geometry=[line], crs="EPSG:32722").to_file(thin, driver="GeoJSON")
    centre = read_labels(thin, grid, "class", ["road"])
    touched = read_labels(thin, grid, "class", ["road"], all_touched=True)
    assert (centre == 1).sum() < 5 and (touched == 1).sum() >= 38


def test_label_raster_groups_and_ignore_others(tmp_path, tiny_scene):
    codes = np.zeros((1, 48, 48), dtype=np.uint8)
    codes[0, :10] = 7
    codes[0, 10:20] = 3
    codes[0, 20:30] = 4
    path = write_image(tmp_path / "codes.tif", codes, nodata=250)
    ids = read_labels(path, Grid.of(tiny_scene["image"]), "class", ["x", "y"], class_values=[3, 7],
                      class_groups={"x": [4]}, others="ignore")
    assert (ids[:10] == 2).all() and (ids[10:30] == 1).all() and (ids[30:] == NODATA).all()
