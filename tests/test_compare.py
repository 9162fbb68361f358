"""Comparing runs on fabricated run directories (no training): records, intervals, files, command."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from deepgeo_runner.compare import compare, read_run, summarize_sweep, t_interval, write_summary
from deepgeo_runner.compare.aggregate import group_key
from deepgeo_runner.compare.cli import main as compare_main
from deepgeo_runner.compare.search import search_result
from tests.helpers import REPO

# Student's t quantiles at 0.975 in closed form (no scipy): df=1 is Cauchy, tan(0.475π); df=2 solves
# t / sqrt(2 + t²) = 0.95, i.e. t = sqrt(2 · 0.95² / (1 - 0.95²))
T1 = math.tan(0.475 * math.pi)  # 12.7062...
T2 = math.sqrt(2 * 0.95**2 / (1 - 0.95**2))  # 4.3027...

# A 1×1 PNG: a plot the page must embed (the browser test checks real ones)
PNG = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                    "1f15c4890000000d49444154789c6360f8ffff3f0005fe02fea7d6a4"
                    "9c0000000049454e44ae426082")


def make_run(path: Path, overrides: list[str], metrics: dict | None, *, seed: int = 1,
             history: list[tuple[int, float, float]] | None = None, status: str = "completed",
             monitor: str = "val_f1_macro", timings: dict | None = None, job_num: int | None = None) -> Path:
    """A run directory as deepgeo leaves one; ``history`` rows are (epoch, val_f1_macro, val_loss)."""
    (path / ".hydra").mkdir(parents=True)
    (path / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"seed": seed, "model": {"_target_": "deepgeo_runner.ml.models.fcn8s", "width": 8},
              "data": {"name": "demo", "demo_size": 256, "image": None}, "train": {"monitor": monitor,
                                                                                     "monitor_mode": "auto"}}
    (path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if job_num is not None:
        (path / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": job_num}}}))
    provenance = {"status": status, "seed": seed, "timings_s": timings or {"prepare": 1.5, "fit_test_predict": 10.0},
                  "git_commit": "abc123"}
    if status != "completed":
        provenance["error"] = "the loss became NaN"
    (path / "provenance.json").write_text(json.dumps(provenance))
    if metrics is not None:
        (path / "metrics.json").write_text(json.dumps(metrics))
        (path / "report.html").write_text("<html><body>report</body></html>")
        (path / "plots").mkdir()
        (path / "plots" / "confusion_matrix.png").write_bytes(PNG)
    if history:
        (path / "logs").mkdir()
        lines = ["epoch,step,val_f1_macro,val_loss"] + [f"{e},{10 * (e + 1)},{f},{loss}" for e, f, loss in history]
        (path / "logs" / "history.csv").write_text("\n".join(lines) + "\n")
    return path


def scores(f1: float, acc: float) -> dict:
    return {"accuracy": acc, "f1_macro": f1, "iou_macro": f1 / 2, "kappa": acc - 0.1, "cross_entropy": 0.3,
            "per_class": {"forest": {"f1": f1, "iou": f1 / 2}}}


def test_a_run_record_reads_overrides_scores_best_validation_and_wall_time(tmp_path):
    run = make_run(tmp_path / "r", ["model=fcn8s", "seed=1"], scores(0.8, 0.9),
                   history=[(0, 0.5, 0.9), (1, 0.7, 0.4), (2, 0.65, 0.6)])
    rec = read_run(run)
    assert rec.overrides == ["model=fcn8s", "seed=1"] and rec.status == "completed" and rec.seed == 1
    assert rec.best_score == 0.7 and rec.best_epoch == 1  # val_f1_macro is maximized
    assert rec.wall_s == 11.5 and rec.code_version == "abc123"
    assert rec.metrics["f1_macro"] == 0.8 and rec.metrics["f1[forest]"] == 0.8
    assert rec.model == "deepgeo_runner.ml.models.fcn8s" and rec.data == "demo scene (256 px)"
    loss_run = make_run(tmp_path / "l", [], scores(0.8, 0.9), monitor="val_loss",
                        history=[(0, 0.5, 0.9), (1, 0.7, 0.4), (2, 0.65, 0.6)])
    assert (read_run(loss_run).best_score, read_run(loss_run).best_epoch) == (0.4, 1)  # a loss is minimized


def test_code_version_is_preferred_over_the_git_commit(tmp_path):
    run = make_run(tmp_path / "r", [], None)
    record = json.loads((run / "provenance.json").read_text())
    (run / "provenance.json").write_text(json.dumps({**record, "code_version": "0.1.0+g1234"}))
    assert read_run(run).code_version == "0.1.0+g1234"


def test_fold_and_seed_are_dropped_from_the_setting():
    assert group_key(["model=unet", "seed=2", "data.fold=3", "+data.folds=5"]) == ("+data.folds=5", "model=unet")
    assert group_key(["++seed=1", "model=unet"]) == group_key(["model=unet", "seed=7"])


def test_the_t_interval_matches_a_hand_computation():
    # values 0.80, 0.90, 0.85: mean 0.85, sample sd 0.05, half-width t(0.975, 2) · 0.05 / √3
    iv = t_interval([0.80, 0.90, 0.85])
    half = T2 * 0.05 / math.sqrt(3)
    assert iv.mean == pytest.approx(0.85, abs=1e-12) and iv.n == 3
    assert (iv.low, iv.high) == (pytest.approx(0.85 - half, abs=1e-12), pytest.approx(0.85 + half, abs=1e-12))
    with pytest.raises(ValueError):
        t_interval([0.5])


def test_intervals_are_clipped_to_the_range_of_their_metric():
    """Three folds near 1: t(0.975, 2) = 4.30 would carry an accuracy's interval past 1 and a
    small loss's below 0; the summary keeps each within what the metric can be."""
    from deepgeo_runner.compare.aggregate import metric_range

    assert metric_range("accuracy") == metric_range("f1[water]") == (0.0, 1.0)
    assert metric_range("kappa") == (-1.0, 1.0) and metric_range("cross_entropy")[0] == 0.0
    assert metric_range("val_loss") == (0.0, math.inf)
    near_one = t_interval([0.9958, 0.9998, 0.9997], bounds=metric_range("accuracy"))
    assert near_one.high == 1.0 and near_one.low == pytest.approx(0.9984 - T2 * 0.0022803 / math.sqrt(3), abs=1e-4)
    small_loss = t_interval([0.0008, 0.0011, 0.0225], bounds=metric_range("cross_entropy"))
    assert small_loss.low == 0.0 and small_loss.high > small_loss.mean


def test_folds_and_seeds_are_aggregated_in_the_csv_json_and_html(tmp_path):
    sweep = tmp_path / "sweep"
    for i, (f1, fold) in enumerate([(0.80, 0), (0.90, 1), (0.85, 2)]):
        make_run(sweep / str(i), ["model=unet", "data.folds=3", f"data.fold={fold}"], scores(f1, 0.9 + 0.01 * i),
                 history=[(0, f1 - 0.1, 0.5)], job_num=i)
    make_run(sweep / "3", ["model=fcn8s", "seed=1"], scores(0.60, 0.7), seed=1, job_num=3)
    make_run(sweep / "4", ["model=fcn8s", "seed=2"], scores(0.70, 0.8), seed=2, job_num=4)
    make_run(sweep / "5", ["model=fcn8s", "seed=3"], None, seed=3, status="failed", job_num=5)
    make_run(sweep / "6", ["model=fcn32s"], scores(0.5, 0.5), job_num=6)  # alone: no interval
    comparison = summarize_sweep(sweep)
    assert [g.overrides for g in comparison.groups] == [("data.folds=3", "model=unet"), ("model=fcn8s",)]
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    runs = [r for r in rows if r["row"] == "run"]
    assert [r["run"] for r in runs] == ["0", "1", "2", "3", "4", "5", "6"]
    assert runs[5]["status"] == "failed" and runs[5]["f1_macro"] == "" and "NaN" in runs[5]["error"]
    assert runs[0]["report"] == "0/report.html" and runs[5]["report"] == ""
    means = {r["overrides"]: r for r in rows if r["row"] == "mean"}
    lows = {r["overrides"]: r for r in rows if r["row"] == "ci95_low"}
    half = T2 * 0.05 / math.sqrt(3)
    unet = "data.folds=3 model=unet"
    assert float(means[unet]["f1_macro"]) == pytest.approx(0.85) and means[unet]["runs"] == "3"
    assert float(lows[unet]["f1_macro"]) == pytest.approx(0.85 - half)
    assert float(means[unet]["best_score"]) == pytest.approx(0.75)  # best validation scores 0.7, 0.8, 0.75
    # the failed seed is left out, not counted as zero: two values 0.6 and 0.7, t(0.975, 1) = T1
    assert float(means["model=fcn8s"]["f1_macro"]) == pytest.approx(0.65)
    assert float(lows["model=fcn8s"]["f1_macro"]) == pytest.approx(0.65 - T1 * 0.05, abs=1e-9)
    summary = json.loads((sweep / "summary.json").read_text())
    interval = summary["groups"][0]["intervals"]["f1_macro"]
    assert interval["n"] == 3 and interval["ci95"][1] == pytest.approx(0.85 + half)
    assert summary["groups"][1]["runs"] == ["3", "4", "5"] and "search" not in summary
    page = (sweep / "summary.html").read_text()
    assert f"0.8500 [{0.85 - half:.4f}, {0.85 + half:.4f}]" in page and "href='0/report.html'" in page
    assert page.count("src='data:image/png;base64,") == 6  # the confusion matrices of the runs that have one
    assert "http://" not in page and "https://" not in page  # self-contained
    assert "the loss became NaN" in page


def test_damaged_and_partial_runs_never_break_the_summary(tmp_path):
    run = make_run(tmp_path / "0", ["seed=1"], scores(0.5, 0.5))
    (run / "metrics.json").write_text("{truncated")
    (run / "provenance.json").write_text("")
    bare = tmp_path / "1"
    (bare / ".hydra").mkdir(parents=True)
    (bare / ".hydra" / "overrides.yaml").write_text("- seed=2\n")
    (bare / "deepgeo.log").write_text("[2026-01-01][deepgeo_runner][ERROR] - data.chip_size=-1 is not valid\n")
    comparison = summarize_sweep(tmp_path)
    assert [r.status for r in comparison.runs] == ["damaged", "failed before start"]  # its scores: unreadable
    assert "metrics.json is damaged" in comparison.runs[0].error
    assert comparison.runs[1].error == "data.chip_size=-1 is not valid" and comparison.runs[0].metrics == {}


def test_the_search_summary_names_the_winning_trial_folder(tmp_path):
    sweep = tmp_path / "search"
    for i, lr in enumerate([0.001, 0.01, 0.001]):
        make_run(sweep / str(i), [f"optimizer.lr={lr}", "loss=ce"], scores(0.5, 0.5),
                 history=[(0, 0.6 + 0.1 * i, 0.5)], job_num=i)
    (sweep / "optimization_results.yaml").write_text(yaml.safe_dump(
        {"name": "optuna", "best_params": {"optimizer.lr": 0.001, "loss": "ce"}, "best_value": 0.8}))
    result = search_result(sweep, compare(sorted(sweep.iterdir())[:3], sweep).runs)
    assert result.folder == sweep / "2"  # trials 0 and 2 share the parameters; the best value decides
    summary = summarize_sweep(sweep)
    record = json.loads((sweep / "summary.json").read_text())
    assert record["search"]["folder"] == "2" and summary.search.trial == 2
    assert [r["best_trial"] for r in record["runs"]] == [False, False, True]
    assert "came from folder <b>2</b>" in (sweep / "summary.html").read_text()


def test_deepgeo_compare_on_two_run_dirs_and_a_sweep(tmp_path, capsys):
    a = make_run(tmp_path / "runs" / "a", ["model=unet"], scores(0.8, 0.9))
    b = make_run(tmp_path / "runs" / "b", ["model=fcn8s"], scores(0.7, 0.8))
    out = tmp_path / "cmp"
    assert compare_main([str(a), str(b), "-o", str(out)]) == 0
    rows = list(csv.DictReader((out / "summary.csv").open()))
    assert [(r["run"], r["report"]) for r in rows] == [("../runs/a", "../runs/a/report.html"),
                                                       ("../runs/b", "../runs/b/report.html")]
    assert "2 runs compared" in capsys.readouterr().out
    assert compare_main([str(tmp_path / "runs")]) == 0  # a folder of runs: the summary goes inside it
    assert {r["run"] for r in csv.DictReader((tmp_path / "runs" / "summary.csv").open())} == {"a", "b"}


def test_deepgeo_compare_refuses_a_folder_that_is_not_a_run(tmp_path):
    run = make_run(tmp_path / "run", [], scores(0.8, 0.9))
    empty = tmp_path / "notes"
    empty.mkdir()
    (empty / "readme.txt").write_text("not a run")
    proc = subprocess.run([sys.executable, "-m", "deepgeo_runner.compare.cli", str(run), str(empty), "-o",
                           str(tmp_path / "out")], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0  # one line
    assert "is not a run directory" in proc.stderr and str(empty) in proc.stderr
    assert not (tmp_path / "out").exists()  # nothing written
    missing = compare_main([str(tmp_path / "nowhere")])
    assert missing == 2


def test_write_summary_into_a_new_folder(tmp_path):
    run = make_run(tmp_path / "r", ["seed=1"], scores(0.8, 0.9))
    paths = write_summary(compare([run], tmp_path / "deep" / "out"))
    assert [p.name for p in paths] == ["summary.csv", "summary.json", "summary.html"]


def test_a_resumed_search_numbers_its_jobs_after_the_stored_trials(tmp_path):
    optuna = pytest.importorskip("optuna")
    from types import SimpleNamespace

    from deepgeo_runner.sweeper import prepare_resume

    sweep = tmp_path / "new" / "sweep"  # not there yet: the database's folder must be made first
    storage = f"sqlite:///{sweep / 'optuna.db'}"
    sampler = optuna.samplers.RandomSampler(seed=1)
    impl = SimpleNamespace(storage=storage, study_name="s", sweep_dir=str(sweep), sampler=sampler, job_idx=0)
    prepare_resume(impl)
    assert impl.job_idx == 0 and sweep.is_dir()
    study = optuna.create_study(study_name="s", storage=storage, load_if_exists=True)
    for value in (0.1, 0.2, 0.3):
        study.tell(study.ask(), value)
    (sweep / "0").mkdir()
    first_draw = optuna.samplers.RandomSampler(seed=1)._rng.uniform()
    prepare_resume(impl)
    assert impl.job_idx == 3  # trials 0-2 are stored: the next job is folder 3, trial 3
    assert sampler._rng.uniform() != first_draw  # reseeded: a resumed search does not redraw the first points


def test_code_version_as_provenance_writes_it_reads_as_one_short_text(tmp_path):
    """provenance.json's code_version is a mapping: the summary and the report show it as text."""
    run = make_run(tmp_path / "r", [], None)
    record = json.loads((run / "provenance.json").read_text())
    code = {"package": "0.1.0", "git_commit": "abc123+dirty", "source_sha256": "f" * 64}
    (run / "provenance.json").write_text(json.dumps({**record, "code_version": code}))
    assert read_run(run).code_version == "0.1.0 (git abc123+dirty)"
    code = {"package": "0.1.0", "git_commit": None, "source_sha256": "0123456789abcdef" * 4}
    (run / "provenance.json").write_text(json.dumps({**record, "git_commit": None, "code_version": code}))
    assert read_run(run).code_version == "0.1.0 (source 0123456789ab)"


def test_a_damaged_metrics_file_and_a_run_without_a_metric_are_not_hidden(tmp_path):
    sweep = tmp_path / "sweep"
    make_run(sweep / "0", ["model=unet", "seed=1"], scores(0.80, 0.9), seed=1, job_num=0)
    make_run(sweep / "1", ["model=unet", "seed=2"], scores(0.90, 0.9), seed=2, job_num=1)
    make_run(sweep / "2", ["model=unet", "seed=3"], None, seed=3, job_num=2)  # completed, no metrics.json
    damaged = make_run(sweep / "3", ["model=fcn8s"], scores(0.5, 0.5), job_num=3)
    (damaged / "metrics.json").write_text('{"accuracy": 0.5, "f1_ma')  # cut short
    summarize_sweep(sweep)
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    runs = {r["run"]: r for r in rows if r["row"] == "run"}
    assert runs["3"]["status"] == "damaged" and "metrics.json is damaged" in runs["3"]["error"]
    assert str(damaged / "metrics.json") in runs["3"]["error"]
    mean = next(r for r in rows if r["row"] == "mean")
    assert float(mean["f1_macro"]) == pytest.approx(0.85) and mean["runs"] == "2"  # 2 values, not 3 runs
    assert next(r for r in rows if r["row"] == "n")["f1_macro"] == "2"
    page = (sweep / "summary.html").read_text()
    assert "metrics.json is damaged" in page and "(n=2)" in page
