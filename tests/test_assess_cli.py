"""The assess stage from the command line: when it runs, and `stages=[assess]` on an existing map."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from affine import Affine
from shapely import box

from deepgeo_runner.config.schema import run_stages
from deepgeo_runner.config.stages import DEFAULT_STAGES
from deepgeo_runner.config.validate import validate_config
from deepgeo_runner.core.errors import ConfigError
from deepgeo_runner.geo.raster_io import Grid, write_raster
from tests.helpers import deepgeo_ok


@pytest.fixture
def map_and_reference(tmp_path) -> tuple[Path, Path]:
    """A 100 × 100 px class map (forest, deforestation, water) and reference polygons that disagree
    with it along a 2-px strip and nowhere else."""
    values = np.ones((100, 100), dtype=np.uint8)
    values[:, 60:] = 2
    values[40:50, 10:30] = 3
    grid = Grid(rasterio.crs.CRS.from_epsg(32722), Affine(30, 0, 600_000, 0, -30, 9_600_000), 100, 100)
    write_raster(tmp_path / "map.tif", values, grid, 255, ["class"],
                 tags={"class_1": "forest", "class_2": "deforestation", "class_3": "water"})
    t = grid.transform
    gpd.GeoDataFrame({"class": ["forest", "deforestation", "water"]}, geometry=[
        box(*(t * (0, 100)), *(t * (62, 0))), box(*(t * (62, 100)), *(t * (100, 0))),
        box(*(t * (10, 50)), *(t * (30, 40)))], crs=grid.crs).to_file(tmp_path / "reference.gpkg")
    return tmp_path / "map.tif", tmp_path / "reference.gpkg"


def test_assess_joins_the_default_stages_only_when_there_is_something_to_assess_against(map_and_reference, compose):
    _, reference = map_and_reference
    cfg = compose("paths.output_dir=/tmp/nowhere", "assess.reference=null")
    assert "assess" not in cfg.stages and list(cfg.stages) == list(DEFAULT_STAGES)
    assert run_stages(cfg.stages, cfg.assess, cfg.data) == list(DEFAULT_STAGES)
    cfg = compose("paths.output_dir=/tmp/nowhere")  # the built-in demo: assessed against its truth by default
    assert run_stages(cfg.stages, cfg.assess, cfg.data)[-2:] == ["assess", "report"]
    cfg = compose("paths.output_dir=/tmp/nowhere", f"assess.reference={reference}")
    stages = run_stages(cfg.stages, cfg.assess)
    assert stages[-3:] == ["predict", "assess", "report"]
    validate_config(cfg)
    cfg = compose("paths.output_dir=/tmp/nowhere", f"assess.reference={reference}", "stages=[fit,test]")
    assert run_stages(cfg.stages, cfg.assess) == ["fit", "test"]  # an explicit list is taken as it is


def test_assess_alone_needs_a_map_and_no_scene(map_and_reference, tiny_scene, compose):
    class_map, reference = map_and_reference
    with pytest.raises(ConfigError, match=r"assess\.map=MAP\.tif"):
        validate_config(compose("paths.output_dir=/tmp/nowhere", "stages=[assess]"))
    # data=scene without data.image: an existing map is assessed, no scene is read
    validate_config(compose("paths.output_dir=/tmp/nowhere", "stages=[assess]", "data=scene",
                                   "data.classes=[forest,deforestation]", f"assess.map={class_map}",
                                   f"assess.reference={reference}"))
    with pytest.raises(ConfigError, match="assess.users_accuracy"):
        validate_config(compose("paths.output_dir=/tmp/nowhere", "stages=[assess]", f"assess.map={class_map}",
                                       "assess.users_accuracy=1.5"))
    with pytest.raises(ConfigError, match="assess.strata='nope.tif': no such file"):
        validate_config(compose("paths.output_dir=/tmp/nowhere", "stages=[assess]", f"assess.map={class_map}",
                                       "assess.strata=nope.tif"))


@pytest.mark.slow
def test_cli_assesses_an_existing_map_then_reads_the_labelled_sample_back(map_and_reference, tmp_path):
    class_map, reference = map_and_reference

    def deepgeo(run_dir: Path, *overrides: str) -> None:
        deepgeo_ok("stages=[assess,report]", f"assess.map={class_map}", "assess.min_per_stratum=30",
                   "assess.target_se=0.02", "seed=4", *overrides, f"hydra.run.dir={run_dir}",
                   f"paths.cache_dir={tmp_path / 'cache'}", timeout=300)

    first = tmp_path / "auto"
    deepgeo(first, f"assess.reference={reference}")
    result = json.loads((first / "assessment.json").read_text())
    assert set(result) == {"overall_accuracy", "per_class", "error_matrix", "design"}
    assert set(result["per_class"]) == {"forest", "deforestation", "water"}
    deforestation = result["per_class"]["deforestation"]
    for key in ("mapped_area_ha", "area_ha", "area_ci95_ha", "users_accuracy", "users_accuracy_ci95",
                "producers_accuracy", "producers_accuracy_ci95"):
        assert deforestation[key] is not None, key
    assert deforestation["mapped_area_ha"] == pytest.approx(40 * 100 * 0.09)
    true_area = 38 * 100 * 0.09  # the reference's deforestation: 38 columns
    low, high = deforestation["area_ci95_ha"]
    assert low < true_area < high and deforestation["users_accuracy"] < 1.0  # the strip is caught
    design = result["design"]
    assert design["allocation"] == "min_per_stratum" and design["seed"] == 4 and design["strata"] == "map classes"
    assert design["pixel_area_ha"] == pytest.approx(0.09) and design["crs"] == "EPSG:32722"
    assert design["strata_sizes"]["water"]["sample"] == 30
    assert (first / "plots" / "assessment_area.png").is_file()
    page = (first / "report.html").read_text()
    assert "Map accuracy and area" in page and "assessment_area.png" in page
    # the written sample, as an analyst would return it labelled, gives the same estimates
    second = tmp_path / "labelled"
    deepgeo(second, f"assess.sample={first / 'assessment_sample.gpkg'}")
    again = json.loads((second / "assessment.json").read_text())
    assert again["per_class"] == result["per_class"]
    assert again["overall_accuracy"] == result["overall_accuracy"]


@pytest.mark.slow
def test_the_whole_cycle_ends_with_the_assessment_of_its_own_prediction(tmp_path):
    """Default stages + assess.reference: train (debug=fast), predict, assess against the labels, report."""
    from deepgeo_runner.geo.demo import make_demo_scene

    demo = make_demo_scene(tmp_path / "demo", size=256)
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "deepgeo_runner.cli", "debug=fast", "trainer=cpu", f"data.image={demo.image}",
           f"data.labels={demo.labels}", f"assess.reference={demo.labels}", "assess.sample_size=120",
           "assess.min_per_stratum=20", f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"deepgeo failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["stages"][-3:] == ["predict", "assess", "report"] and "assess" in provenance["timings_s"]
    result = json.loads((run_dir / "assessment.json").read_text())
    assert result["design"]["map"] == str(run_dir / "prediction.tif")
    assert result["design"]["sample_size"] == 120 and result["design"]["unlabelled_points"] == 0
    assert set(result["per_class"]) <= {"forest", "deforestation", "water"}
    assert "Map accuracy and area" in (run_dir / "report.html").read_text()


def test_report_alone_is_no_assessment(compose):
    """stages=[report] re-draws a run's report: it must not take the assess-only path (which
    assesses a map nobody asked about and skips the data stages the report reads)."""
    from deepgeo_runner.config.stages import is_assess_only
    from deepgeo_runner.config.validate import assess_only

    assert not is_assess_only(["report"])
    assert not assess_only(compose("paths.output_dir=/tmp/nowhere", "stages=[report]"))
    assert is_assess_only(["assess"]) and is_assess_only(["assess", "report"])
