"""k-fold cross-validation from the command line: one fold's full cycle (intervals, PR curves,
error map), a multirun over the folds, and the cache entries the folds share or keep apart."""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import rasterio

from tests.helpers import REPO, deepgeo_ok

pytestmark = pytest.mark.slow


def deepgeo(*args: str) -> subprocess.CompletedProcess:
    return deepgeo_ok(*args, cwd=REPO)


def test_one_fold_runs_the_cycle_with_intervals_pr_curves_and_error_map(tmp_path):
    run_dir = tmp_path / "run"
    deepgeo("debug=fast", "logger=none", "data.folds=3", "data.fold=1", f"hydra.run.dir={run_dir}",
            f"paths.cache_dir={tmp_path / 'cache'}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "kappa", "f1_macro", "iou_macro"):
        lo, hi = metrics["ci95"][key]
        assert lo <= metrics[key] <= hi, key
    assert set(metrics["ci95"]["per_class"]) == set(metrics["class_names"])
    assert metrics["ci95_method"].startswith("block bootstrap over ") and "1000 resamples" in metrics["ci95_method"]
    assert all(0 <= v["ap"] <= 1 for v in metrics["per_class"].values() if v["support"])
    for name in ("pr_curves.png", "error_map.png", "roc.png"):
        assert (run_dir / "plots" / name).is_file(), name
    page = (run_dir / "report.html").read_text()
    assert "95 % CI" in page and "<th>AP</th>" in page and "error_map.png" in page and "fold 1 of 3" in page
    labelled = json.loads((run_dir / "data_report.json").read_text())["labelled"]
    assert (labelled["fold"], labelled["folds"]) == (1, 3) and "fold 1 of 3" in labelled["split_method"]


def test_a_multirun_over_the_folds_tests_every_labelled_pixel_once(tmp_path):
    sweep = tmp_path / "sweep"
    deepgeo("-m", "debug=fast", "logger=none", "stages=[check]", "data.folds=3", "data.fold=range(3)",
            f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}")
    reports = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/data_report.json"))]
    assert [r["labelled"]["fold"] for r in reports] == [0, 1, 2]
    tested = [sum(r["splits"][s]["class_pixels"][c] for s in ("test", "unreachable") for c in r["splits"][s][
        "class_pixels"]) for r in reports]
    assert all(t > 0 for t in tested)
    # the labelled pixels of the three test areas (reachable by chips or not) add up to every labelled pixel
    with rasterio.open(next((tmp_path / "cache" / "rasterize").glob("*/labels.tif"))) as src:
        labels = src.read(1)
    assert sum(tested) == int(np.isin(labels, [1, 2, 3]).sum())


def test_folds_share_inputs_and_labels_but_not_statistics_or_chips(tmp_path, compose):
    from deepgeo_runner.pipeline.runner import run

    keys = []
    for fold in (0, 1, 0):
        cfg = compose("debug=fast", "stages=[prepare,rasterize,chips]", "data.folds=3", f"data.fold={fold}",
                             f"paths.output_dir={tmp_path / f'run{len(keys)}'}",
                             f"paths.cache_dir={tmp_path / 'cache'}")
        art = run(cfg, tmp_path / f"run{len(keys)}")
        keys.append((art.cache_keys, art.reused))
    (first, _), (second, reused), (third, again) = keys
    assert first["rasterize"] == second["rasterize"] and reused["rasterize"]
    assert first["prepare"] != second["prepare"] and first["chips"] != second["chips"]
    assert third == first and again["prepare"] and again["chips"]
