"""``debug=fast``: the whole cycle in seconds, for the demo and every experiment; the report draws
its training curves from ``logs/history.csv`` whatever the logger (here none)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deepgeo_runner.config.validate import validate_config
from deepgeo_runner.core.history import HISTORY_FILE, read_history
from tests.helpers import REPO, options

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("cache")  # the small demo scene is generated once


def _one_epoch_of_at_most_two_steps(run_dir: Path) -> None:
    (row,) = read_history(run_dir / HISTORY_FILE)
    assert row["epoch"] == 0 and 1 <= row["step"] <= 2 and "train_loss" in row


@pytest.mark.parametrize("experiment", options("experiments"))
def test_every_experiment_runs_one_step_under_debug_fast(experiment, cache_dir, tmp_path, monkeypatch, compose):
    from deepgeo_runner.pipeline.runner import run

    monkeypatch.syspath_prepend(str(REPO / "experiments"))  # PYTHONPATH=experiments, as the README says
    monkeypatch.chdir(REPO)  # experiments name ../shared/data from the repository root
    run_dir = tmp_path / "run"
    cfg = compose(f"experiments={experiment}", "debug=fast", f"paths.output_dir={run_dir}",
                         f"paths.cache_dir={cache_dir}")
    image = cfg.data.image
    if image is not None and not Path(image).exists():
        pytest.skip(f"experiment '{experiment}' reads {image}, absent here (../shared/data)")
    validate_config(cfg)
    art = run(cfg, run_dir)
    assert art.metrics is not None and (run_dir / "metrics.json").is_file()
    assert (run_dir / "prediction.tif").is_file() and (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "plots" / "training_curves.png").is_file()
    _one_epoch_of_at_most_two_steps(run_dir)


def test_debug_fast_without_a_logger_runs_the_cycle_and_reports_curves(cache_dir, tmp_path):
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "deepgeo_runner.cli", "debug=fast", "logger=none",
           f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("metrics.json", "prediction.tif", "report.html", "checkpoints/best.ckpt", "checkpoints/last.ckpt"):
        assert (run_dir / name).is_file(), name
    assert not (run_dir / "logs" / "metrics.csv").exists() and not (run_dir / "lightning_logs").exists()
    _one_epoch_of_at_most_two_steps(run_dir)
    assert (run_dir / "plots" / "training_curves.png").is_file()  # drawn from the history, no logger
    assert "training_curves.png" in (run_dir / "report.html").read_text()
