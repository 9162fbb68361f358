"""One clean console: periodic progress lines without a terminal, Lightning's lines once and
without advertisements, ``python -m deepgeo_runner``, and no run folder for a run refused
before it started."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections import Counter

import pytest

from deepgeo_runner.core import console
from tests.helpers import REPO


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_progress_lines_log_every_interval_with_the_time_left(caplog):
    clock = FakeClock()
    bar = console.ProgressLines(total=10, desc="predict windows", unit="windows", every_s=30, clock=clock)
    with caplog.at_level(logging.INFO, logger="deepgeo_runner.progress"):
        for step in range(10):
            clock.now = 10.0 * (step + 1)  # 10 s a window
            bar.update()
        bar.close()
    lines = [r.getMessage() for r in caplog.records]
    # at 30 s, 60 s and 90 s, then the closing line at 100 s (minutes from 90 s on)
    assert lines[0] == "predict windows: 3/10 windows (30 %), 30 s elapsed, about 70 s left"
    assert lines[1].startswith("predict windows: 6/10 windows (60 %), 60 s elapsed, about 40 s left")
    assert len(lines) == 4 and lines[-1] == "predict windows: 10/10 windows (100 %), 1 min 40 s elapsed"


def test_a_short_loop_logs_nothing_and_iteration_passes_items_through(caplog):
    with caplog.at_level(logging.INFO, logger="deepgeo_runner.progress"):
        items = list(console.ProgressLines(range(5), desc="rasterize"))
    assert items == [0, 1, 2, 3, 4]
    assert not caplog.records


def test_progress_is_a_bar_on_a_terminal_and_lines_elsewhere(monkeypatch):
    from tqdm.auto import tqdm

    monkeypatch.setenv(console.FORCE_ENV, "bar")
    bar = console.progress(range(3), desc="x")
    assert isinstance(bar, tqdm)
    bar.close()
    monkeypatch.setenv(console.FORCE_ENV, "lines")
    assert type(console.progress(range(3), desc="x")) is console.ProgressLines
    silent = console.progress(total=3, desc="x", disable=True)
    silent.update(3)
    assert silent.n == 3 and not console.interactive()


def test_lightning_lines_reach_the_root_handler_once_without_advertisements(caplog):
    import lightning.pytorch  # noqa: F401  (adds Lightning's own console handler)
    from lightning.pytorch.utilities.rank_zero import rank_zero_info

    root = logging.getLogger()
    if not root.hasHandlers():
        pytest.skip("pytest installs a root handler (caplog); without one Lightning keeps its own")
    console.tidy_third_party_logging()
    assert not [h for h in logging.getLogger("lightning").handlers if type(h) is logging.StreamHandler]
    with caplog.at_level(logging.INFO):
        rank_zero_info("GPU available: False, used: False")
        rank_zero_info("💡 Tip: For seamless cloud logging, try installing something")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["GPU available: False, used: False"]


@pytest.mark.slow
def test_a_run_without_terminal_prints_each_line_once_with_progress(tmp_path):
    """``python -m deepgeo_runner`` with output to a pipe, as under nohup or CI."""
    run_dir = tmp_path / "run"
    cmd = [sys.executable, "-m", "deepgeo_runner", "debug=fast", f"hydra.run.dir={run_dir}",
           f"paths.cache_dir={tmp_path / 'cache'}", "stages=[prepare,rasterize,chips,fit,test]"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "💡" not in out and "litlogger" not in out
    assert "epoch 1/1 done: " in out and "val_f1_macro" in out
    assert "\r" not in out  # no progress bar redrawn into the log
    messages = Counter(line.split(" - ", 1)[-1].removeprefix("INFO: ") for line in out.splitlines() if line.strip())
    repeated = {m: n for m, n in messages.items() if n > 1}
    assert not repeated, repeated
    assert (run_dir / "metrics.json").is_file()


def test_a_run_refused_by_its_config_leaves_no_run_folder(tmp_path):
    run_dir = tmp_path / "runs" / "refused"
    cmd = [sys.executable, "-m", "deepgeo_runner", "data.chip_size=4", f"hydra.run.dir={run_dir}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2
    assert "data.chip_size=4 is not valid" in proc.stdout + proc.stderr
    assert not run_dir.exists()
    # a folder that already holds other files (an earlier run's) is kept as it was
    run_dir.mkdir(parents=True)
    (run_dir / "metrics.json").write_text("{}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 2 and (run_dir / "metrics.json").read_text() == "{}"


def test_training_lines_carry_the_loss_and_one_line_per_epoch_with_its_scores(caplog, monkeypatch):
    """The callback's hooks as Lightning calls them, without a terminal: periodic lines show the
    last loss; each epoch, validated or not, ends with one line of the latest scores."""
    from types import SimpleNamespace

    import torch

    from deepgeo_runner.lit.callbacks import ProgressLines

    monkeypatch.setenv(console.FORCE_ENV, "lines")
    trainer = SimpleNamespace(is_global_zero=True, num_training_batches=3, max_epochs=2, current_epoch=0,
                              sanity_checking=False, callback_metrics={"val_f1_macro": torch.tensor(0.5)})
    callback = ProgressLines(every_s=0.0)  # a line at every batch
    with caplog.at_level(logging.INFO, logger="deepgeo_runner.progress"):
        for epoch in range(2):
            trainer.current_epoch = epoch
            callback.on_train_epoch_start(trainer, None)
            for i in range(3):
                callback.on_train_batch_end(trainer, None, {"loss": torch.tensor(1.0 / (i + 1))}, None, i)
            callback.on_train_epoch_end(trainer, None)
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0].startswith("epoch 1/2: 1/3 batches (33 %)") and lines[0].endswith("loss 1.0000")
    assert lines[3] == "epoch 1/2 done: val_f1_macro 0.5000"
    assert lines[-1] == "epoch 2/2 done: val_f1_macro 0.5000" and len(lines) == 8
