"""Issue 20, part 2: the map's accuracy is the headline. The data check measures how the labels cover
the scene and warns when they are sparse; metrics.json says what the test split covers; the console,
the report and the comparisons lead with the map's accuracy when an assessment exists."""

from __future__ import annotations

import json

import numpy as np

from deepgeo_runner.geo.label_layout import IGNORE, label_coverage
from deepgeo_runner.stages.data_check import LabelGrid, SplitLayout, check_data, labels_coverage, sparse_labels_warning
from tests.helpers import write_image


def _sparse_ids() -> np.ndarray:
    """5×10 label ids: class 1 in cols 0-1, nodata (255) in col 2, unlabelled (0) in cols 3-4, class 2 in 5-9."""
    ids = np.zeros((5, 10), dtype=np.uint8)
    ids[:, 0:2], ids[:, 2], ids[:, 5:] = 1, 255, 2
    return ids


def test_coverage_of_a_hand_made_label_raster_is_exact():
    coverage = labels_coverage(_sparse_ids(), ["forest", "clearing"], [1, 2])
    got = coverage.to_dict()
    assert got["valid_pixels"] == 45 and got["labelled_pixels"] == 35  # 50 px less the nodata column
    assert got["coverage"] == 35 / 45
    assert got["coverage_per_class"] == {"forest": 10 / 45, "clearing": 25 / 45}
    assert got["contact"] == 0.0 and got["wall_to_wall"] is False  # every label edge faces unlabelled ground
    # forest cols 0,1 lie 5,4 px from clearing col 5; clearing cols 5..9 lie 4..8 px from forest col 1
    pooled = [5] * 5 + [4] * 5 + [4, 5, 6, 7, 8] * 5
    assert got["distance_to_other_class_px"] == {
        "p10": float(np.percentile(pooled, 10)), "median": 5.0, "p90": 8.0}


def test_wall_to_wall_labels_and_the_distance_to_the_border():
    ids = np.ones((5, 10), dtype=np.uint8)
    ids[:, 5:] = 2
    got = labels_coverage(ids, ["forest", "clearing"], [1, 2]).to_dict()
    assert got["coverage"] == 1.0 and got["wall_to_wall"] is True and got["contact"] == 1.0
    assert got["distance_to_other_class_px"]["median"] == 3.0  # 1..5 px on either side of the border


def test_an_explicit_valid_mask_is_the_denominator_and_one_class_has_no_distance():
    targets = np.full((4, 4), IGNORE, dtype=np.uint8)
    targets[0, :] = 0
    valid = np.ones((4, 4), dtype=bool)
    valid[3, :] = False
    got = label_coverage(targets, ["forest"], valid)
    assert got.coverage == 4 / 12 and got.class_pixels == {"forest": 4}
    assert got.distance_px is None


def test_large_scenes_measure_distances_on_a_strided_grid():
    ids = np.ones((64, 64), dtype=np.uint8)
    ids[:, 32:] = 2
    got = labels_coverage(ids, ["a", "b"], [1, 2])
    small = label_coverage(np.where(ids == 1, 0, 1).astype(np.uint8), ["a", "b"], max_px=1024)
    assert small.distance_step == 2 and "distance_step_px" in small.to_dict()
    assert small.coverage == got.coverage == 1.0  # coverage is always counted on every pixel


def test_sparse_labels_are_warned_about_naming_how_to_measure_the_map():
    coverage = labels_coverage(_sparse_ids(), ["forest", "clearing"], [1, 2])
    warning = sparse_labels_warning(coverage)
    assert "sparse" in warning and "77.8 %" in warning
    assert "describe the labelled polygons, not the map" in warning
    assert "assess.reference=" in warning and "assess.sample=" in warning
    assessed = sparse_labels_warning(coverage, "assess.reference=demo")
    assert "This run measures the map: assess.reference=demo" in assessed


def _report(ids: np.ndarray):
    return check_data(LabelGrid(ids, ["forest", "clearing"], [1, 2]),
                      SplitLayout(np.zeros(ids.shape, dtype=np.uint8), buffer=0, chip_size=4),
                      nodata={"fraction": 0.0, "pixels": 0, "rule": "gdal", "source": "none"}, inputs=[])


def test_the_data_report_has_the_labels_entry_and_warns_only_on_sparse_labels():
    sparse = _report(_sparse_ids())
    assert sparse.to_dict()["labels"]["coverage"] == 35 / 45
    assert any("labels are sparse" in w for w in sparse.warnings)
    assert "labels cover 77.8 % of the valid pixels" in sparse.table()
    wall = np.ones((5, 10), dtype=np.uint8)
    wall[:, 5:] = 2
    report = _report(wall)
    assert report.to_dict()["labels"]["wall_to_wall"] is True
    assert not any("sparse" in w for w in report.warnings)
    assert {"splits", "nodata", "inputs", "labelled", "input", "warnings", "error"} <= set(report.to_dict())


def _check_run(compose, tmp_path, image, labels, name):
    from deepgeo_runner.pipeline.runner import run

    run(compose("data=scene", f"data.image={image}", f"data.labels={labels}",
                "data.classes=[forest,clearing]", "data.band_names=[blue,green,red,nir]", "preprocessing.indices=[]",
                "data.chip_size=16", "stages=[check]", f"paths.cache_dir={tmp_path / 'cache'}",
                f"paths.output_dir={tmp_path / name}"), tmp_path / name)
    return json.loads((tmp_path / name / "data_report.json").read_text())


def test_a_sparse_label_run_warns_and_a_wall_to_wall_one_does_not(tmp_path, compose, tiny_scene):
    image = tiny_scene["image"]
    sparse = _check_run(compose, tmp_path, image, tiny_scene["labels"], "sparse")  # two interior polygons, 8 px apart
    assert sparse["labels"]["wall_to_wall"] is False and 0 < sparse["labels"]["coverage"] < 1
    assert sparse["labels"]["valid_pixels"] == 48 * 48 - 16  # the image's nodata corner is not the scene
    assert any("labels are sparse" in w and "assess.reference" in w for w in sparse["warnings"])

    ids = np.ones((1, 48, 48), dtype=np.uint8)
    ids[0, :, 24:] = 2
    wall = write_image(tmp_path / "wall.tif", ids, nodata=None)
    report = _check_run(compose, tmp_path, image, wall, "wall")
    assert report["labels"]["wall_to_wall"] is True
    assert not any("sparse" in w for w in report["warnings"])


def test_metrics_say_what_share_of_the_scene_the_test_split_covers():
    from deepgeo_runner.pipeline.artifacts import Artifacts
    from deepgeo_runner.pipeline.learning import with_test_coverage

    scores = with_test_coverage({"accuracy": 1.0, "pixels": 250, "split": "test"}, Artifacts(valid_pixels=1000), "test")
    assert scores["test_coverage"] == 0.25 and scores["accuracy"] == 1.0  # existing keys as they were
    assert with_test_coverage({"pixels": 250}, Artifacts(), "test")["test_coverage"] is None  # a datamodule's chips
    other = Artifacts(valid_pixels=1000, split_scenes={"test": object()})
    assert with_test_coverage({"pixels": 250}, other, "test")["test_coverage"] is None  # another scene's chips


def _assessment(oa: float = 0.74) -> dict:
    """assessment.json as the assess stage writes it (the keys the headline reads)."""
    return {
        "overall_accuracy": {"estimate": oa, "se": 0.009, "ci95": [oa - 0.02, oa + 0.02]},
        "per_class": {
            "forest": {"mapped_area_ha": 25287.3, "area_ha": 37806.6, "area_se_ha": 440.8,
                       "area_ci95_ha": [36942.6, 38670.6], "users_accuracy": 0.991, "users_accuracy_ci95": [0.98, 1.0],
                       "producers_accuracy": 0.663, "producers_accuracy_ci95": [0.648, 0.678]},
            "deforestation": {"mapped_area_ha": 19683.1, "area_ha": 9299.3, "area_se_ha": 399.3,
                              "area_ci95_ha": [8516.7, 10081.9], "users_accuracy": 0.460,
                              "users_accuracy_ci95": [0.421, 0.499], "producers_accuracy": 0.973,
                              "producers_accuracy_ci95": [0.955, 0.991]},
        },
        "design": {"sample_size": 1600, "labels": "reference layer demo_reference.tif", "strata": "map classes",
                   "strata_sizes": {"forest": {"sample": 815}, "deforestation": {"sample": 785}}},
    }


METRICS = {"accuracy": 1.0, "f1_macro": 1.0, "iou_macro": 1.0, "kappa": 1.0, "pixels": 29026,
           "test_coverage": 29026 / 551252, "class_names": ["forest", "deforestation"],
           "confusion_matrix": [[100, 0], [0, 100]],
           "per_class": {"forest": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0, "support": 100},
                         "deforestation": {"precision": 1.0, "recall": 1.0, "f1": 1.0, "iou": 1.0, "support": 100}}}


def test_the_console_headline_leads_with_the_maps_accuracy_and_areas():
    from deepgeo_runner.report.headline import headline_lines

    lines = headline_lines(_assessment(), METRICS)
    assert lines[0].startswith("map overall accuracy 0.740 (95 % CI [0.720, 0.760]), 1600 sample points")
    assert "user's acc." in lines[1] and "adjusted ha" in lines[1] and "95 % interval ha" in lines[1]
    deforestation = next(line for line in lines if line.strip().startswith("deforestation"))
    for cell in ("0.460", "0.973", "19,683", "9,299", "[8,517, 10,082]", "+112 %"):
        assert cell in deforestation, (cell, deforestation)
    assert lines[-1] == ("test split (29,026 labelled px, 5.3 % of the scene's valid pixels): accuracy 1.0000, "
                         "F1 macro 1.0000, IoU macro 1.0000")  # last: after the map, with what it covers


def test_without_an_assessment_one_line_says_the_map_is_unmeasured_and_how_to_measure_it():
    from deepgeo_runner.report.headline import headline_lines

    lines = headline_lines(None, METRICS)
    assert len(lines) == 2 and lines[0].startswith("the map's accuracy is unmeasured")
    assert "assess.reference=" in lines[0] and "assess.sample=" in lines[0]
    assert lines[1].startswith("test split")


def test_the_command_prints_the_headline_from_the_run_directory(tmp_path, caplog):
    import logging
    from types import SimpleNamespace

    from deepgeo_runner.cli import _print_headline

    art = SimpleNamespace(metrics=METRICS, prediction=tmp_path / "prediction.tif")
    with caplog.at_level(logging.INFO, logger="deepgeo_runner"):
        _print_headline(tmp_path, art)
    assert "unmeasured" in caplog.messages[0] and caplog.messages[-1].startswith("test split")
    caplog.clear()
    (tmp_path / "assessment.json").write_text(json.dumps(_assessment()))
    with caplog.at_level(logging.INFO, logger="deepgeo_runner"):
        _print_headline(tmp_path, art)
    assert caplog.messages[0].startswith("map overall accuracy 0.740")
    assert not any("unmeasured" in m for m in caplog.messages)


def _report_page(run_dir, assessment: dict | None) -> str:
    from deepgeo_runner.core.classes import ClassTable
    from deepgeo_runner.pipeline.artifacts import Artifacts
    from deepgeo_runner.pipeline.report import write_report

    run_dir.mkdir()
    (run_dir / "metrics.json").write_text(json.dumps(METRICS))
    if assessment is not None:
        (run_dir / "assessment.json").write_text(json.dumps(assessment))
    classes = ClassTable.of(["forest", "deforestation"])
    return write_report(run_dir, Artifacts(status="completed"), classes, []).read_text()


def test_the_reports_first_table_is_the_maps_accuracy_and_area(tmp_path):
    page = _report_page(tmp_path / "assessed", _assessment())
    assert page.index("Map accuracy and area") < page.index("<h2>Test split</h2>")
    assert "mapped vs adjusted" in page and "+112 %" in page
    assert "5.3 % of the scene's valid pixels" in page
    unmeasured = _report_page(tmp_path / "bare", None)
    assert "the map&#x27;s accuracy is unmeasured" in unmeasured
    assert unmeasured.index("unmeasured") < unmeasured.index("<h2>Test split</h2>")


def test_compare_shows_map_accuracy_and_adjusted_areas_when_runs_have_them(tmp_path):
    import csv
    import io

    import yaml

    from deepgeo_runner.compare import compare, read_run
    from deepgeo_runner.compare.summary import summary_csv, summary_html

    def run(name: str, assessment: dict | None):
        path = tmp_path / "sweep" / name
        (path / ".hydra").mkdir(parents=True)
        (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"seed={name}"]))
        (path / "provenance.json").write_text(json.dumps({"status": "completed"}))
        (path / "metrics.json").write_text(json.dumps(METRICS))
        if assessment is not None:
            (path / "assessment.json").write_text(json.dumps(assessment))
        return path

    assessed = read_run(run("0", _assessment(0.74)))
    assert assessed.metrics["map_accuracy"] == 0.74 and assessed.metrics["area_ha[deforestation]"] == 9299.3
    assert assessed.metrics["mapped_area_ha[deforestation]"] == 19683.1
    assert assessed.metrics["ua[deforestation]"] == 0.460
    assert assessed.metrics["test_coverage"] == METRICS["test_coverage"]
    bare = run("1", None)
    assert "map_accuracy" not in read_run(bare).metrics
    comparison = compare([tmp_path / "sweep" / "0", bare], tmp_path / "sweep")
    rows = list(csv.DictReader(io.StringIO(summary_csv(comparison))))
    assert rows[0]["map_accuracy"] == "0.74" and rows[1]["map_accuracy"] == ""
    assert rows[0]["area_ha[deforestation]"] == "9299.3" and rows[0]["mapped_area_ha[forest]"] == "25287.3"
    page = summary_html(comparison)
    assert "<th>map_accuracy</th>" in page and "area_ha[deforestation]</th>" in page and "9,299" in page
    # runs without an assessment: no map column at all
    plain = compare([bare], tmp_path / "sweep")
    assert "map_accuracy" not in summary_csv(plain).splitlines()[0]


def test_an_assessed_existing_map_gets_the_headline_and_a_check_only_run_none(tmp_path, caplog):
    import logging
    from types import SimpleNamespace

    from deepgeo_runner.cli import _print_headline

    nothing = SimpleNamespace(metrics=None, prediction=None)
    with caplog.at_level(logging.INFO, logger="deepgeo_runner"):
        _print_headline(tmp_path, nothing)  # stages=[check]: no map, no scores
    assert caplog.messages == []
    (tmp_path / "assessment.json").write_text(json.dumps(_assessment()))
    with caplog.at_level(logging.INFO, logger="deepgeo_runner"):
        _print_headline(tmp_path, nothing)  # stages=[assess] assess.map=...: the map's headline, no test line
    assert caplog.messages[0].startswith("map overall accuracy") and not caplog.messages[-1].startswith("test split")
