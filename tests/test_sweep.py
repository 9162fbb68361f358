"""Hyperparameter search (hparams_search=optuna): trials share the cache, and the study maximizes
each trial's best validation score — never the test split's."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers import REPO

pytestmark = pytest.mark.slow

TINY = [
    "data.demo_size=320", "data.chip_size=32", "data.block_size=64", "data.split_buffer=16",
    "data.train_chips=64", "data.batch_size=16", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
    "model=fcn8s", "model.width=8", "trainer=cpu", "stages=[prepare,rasterize,chips,fit,test]",
]


def _best_val(trial: Path) -> float:
    rows = list(csv.DictReader((trial / "logs" / "metrics.csv").open()))
    return max(float(r["val_f1_macro"]) for r in rows if r.get("val_f1_macro"))


def test_optuna_study_maximizes_the_validation_score_of_its_trials(tmp_path):
    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "deepgeo_runner.cli", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3",
           f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}", *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    trials = sorted(p for p in sweep.iterdir() if p.is_dir())
    assert len(trials) == 3 and all((t / "metrics.json").is_file() for t in trials)
    best = max(_best_val(t) for t in trials)
    assert result["best_value"] == pytest.approx(best, abs=1e-6)
    assert set(result["best_params"]) == {"optimizer.lr", "optimizer.weight_decay", "augmentation", "loss"}
    lrs = {yaml.safe_load((t / ".hydra" / "overrides.yaml").read_text())[0] for t in trials}
    assert len(lrs) == 3  # three different learning rates were tried
    logs = proc.stdout + proc.stderr
    assert logs.count("prepare: reusing cached") == 2  # trials 2 and 3 reuse the first one's preparation


def test_a_search_without_fit_has_no_objective_and_says_so(tmp_path):
    cmd = [sys.executable, "-m", "deepgeo_runner.cli", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=1",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", f"paths.cache_dir={tmp_path / 'cache'}", "stages=[prepare]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 2
    assert "must include fit" in proc.stdout + proc.stderr


def test_a_diverged_trial_is_marked_failed_and_the_search_goes_on(tmp_path):
    import json

    import optuna

    sweep = tmp_path / "sweep"
    cmd = [sys.executable, "-m", "deepgeo_runner.cli", "-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3",
           "seed=3", "+hydra.sweeper.params={optimizer.lr: 'choice(1e6, 0.001)'}", "trainer.max_epochs=1",
           f"hydra.sweep.dir={sweep}", f"paths.cache_dir={tmp_path / 'cache'}", *TINY]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    study = optuna.load_study(study_name="deepgeo", storage=f"sqlite:///{sweep}/optuna.db")
    states = [t.state.name for t in study.trials]
    assert len(states) == 3 and "FAIL" in states and "COMPLETE" in states, states
    for trial in study.trials:
        record = json.loads((sweep / str(trial.number) / "provenance.json").read_text())
        assert record["status"] == ("failed" if trial.state.name == "FAIL" else "completed")
