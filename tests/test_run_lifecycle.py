"""How a run ends, whatever ends it: one signal handler over the whole run (data stages
included), a status in provenance.json that never stays "running", and no stub folder left by
a refused run. End to end through the `deepgeo` command, on the tiny demo of test_cli_e2e.
"""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.helpers import TINY, run_deepgeo, write_image

pytestmark = pytest.mark.slow

DATA_STAGES = [o for o in TINY if not o.startswith("trainer.max_epochs")] + ["stages=[prepare,rasterize,chips]"]

# the prepare stage writes part of its cache entry, then the process receives a signal
KILL_IN_PREPARE = """
import os, signal, sys
from pathlib import Path
import deepgeo_runner.pipeline.cached_stages as stages

SIGNUM = int(sys.argv.pop(1))

def interrupted_prepare(image, tmp, *args, **kwargs):
    (Path(tmp) / "stack.tif").write_bytes(b"half a raster")
    os.kill(os.getpid(), SIGNUM)

stages.prepare_scene = interrupted_prepare
from deepgeo_runner.cli import main
main()
"""


def deepgeo(run_dir: Path, cache_dir: Path, *overrides: str, code: str | None = None,
            signum: int | None = None) -> subprocess.CompletedProcess:
    head = [str(int(signum))] if code else []
    return run_deepgeo(*head, *overrides, f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache_dir}", code=code)


def provenance(run_dir: Path) -> dict:
    return json.loads((run_dir / "provenance.json").read_text())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_data_stage_stops_the_run_cleanly(tmp_path, signum):
    run, cache = tmp_path / "run", tmp_path / "cache"
    proc = deepgeo(run, cache, *DATA_STAGES, code=KILL_IN_PREPARE, signum=signum)
    assert proc.returncode == 128 + signum, proc.stdout[-3000:] + proc.stderr[-3000:]
    name = signal.Signals(signum).name
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [line for line in lines if f"stopped by {name}" in line] and len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    record = provenance(run)
    assert record["status"] == "interrupted" and f"stopped by {name}" in record["error"]
    prepare = cache / "prepare"
    assert not list(prepare.iterdir()) if prepare.exists() else True  # neither a partial entry nor its temporary


def test_a_check_only_run_completes(tmp_path):
    run = tmp_path / "check"
    proc = deepgeo(run, tmp_path / "cache", *DATA_STAGES[:-1], "stages=[check]")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert provenance(run)["status"] == "completed"


def test_a_refused_prediction_is_recorded_or_leaves_no_folder(tmp_path):
    import torch

    checkpoint = tmp_path / "foreign.ckpt"  # a readable checkpoint, not one of ours: refused by the stage
    torch.save({"state_dict": {}}, checkpoint)
    image = write_image(tmp_path / "scene.tif", np.ones((6, 32, 32), np.float32))
    refused = ["stages=[predict]", f"predict.checkpoint={checkpoint}", f"predict.image={image}"]

    fresh = tmp_path / "runs" / "fresh"  # refused before it produced anything: no folder under runs/
    proc = deepgeo(fresh, tmp_path / "cache", *refused)
    assert proc.returncode == 2 and "Traceback" not in proc.stdout + proc.stderr, proc.stdout[-3000:]
    assert not fresh.exists()

    earlier = tmp_path / "runs" / "earlier"  # a folder with an earlier run's outputs is never removed
    earlier.mkdir(parents=True)
    (earlier / "metrics.json").write_text("{}")
    proc = deepgeo(earlier, tmp_path / "cache", *refused)
    assert proc.returncode == 2, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (earlier / "metrics.json").read_text() == "{}"
    record = provenance(earlier)
    assert record["status"] == "failed" and str(checkpoint) in record["error"]
