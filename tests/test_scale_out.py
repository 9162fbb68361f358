"""Outgrowing one machine: ``trainer.num_nodes`` checked at config time, two "nodes" on loopback
started by torchrun through the command line, and the SLURM launcher config."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from deepgeo_runner.config.validate import validate_config
from deepgeo_runner.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_num_nodes_is_a_trainer_key_with_default_one(compose):
    assert compose("paths.output_dir=/tmp/x").trainer.num_nodes == 1
    cfg = compose("trainer=ddp_cpu", "trainer.num_nodes=2", "paths.output_dir=/tmp/x")  # no '+': the key exists
    validate_config(cfg)
    assert cfg.trainer.num_nodes == 2


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["trainer.num_nodes=0"], r"trainer.num_nodes=0 is not valid"),
        (["trainer.num_nodes=two"], r"trainer.num_nodes='two' is not valid"),
        (["trainer=cpu", "trainer.num_nodes=2"], r"trainer.num_nodes=2 needs .* trainer.strategy=auto"),
        (["trainer=ddp_cpu", "trainer.num_nodes=2", "trainer.strategy=ddp_spawn"], r"trainer.strategy=ddp_spawn"),
    ],
)
def test_num_nodes_is_checked_at_config_time(overrides, message, compose):
    with pytest.raises(ConfigError, match=message):
        validate_config(compose(*overrides, "paths.output_dir=/tmp/x"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TINY = ["debug=fast", "data.demo_size=128", "model=fcn8s", "model.width=4", "seed=3",
        "stages=[prepare,rasterize,chips,fit,test,predict]"]


@pytest.mark.slow
def test_two_nodes_on_loopback_write_one_run_directory(tmp_path):
    """Two torchrun "machines" (node ranks 0 and 1, one process each) train one model; rank 0
    alone writes the shared files: one run directory, one metrics.json, one prediction.tif."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    procs = []
    for node in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={node}",
               "--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}",
               "-m", "deepgeo_runner.cli", "trainer=ddp_cpu", "trainer.num_nodes=2", "trainer.devices=1",
               *TINY, f"hydra.run.dir={run_dir}", f"paths.cache_dir={cache}"]
        log = (tmp_path / f"node{node}.log").open("w")
        procs.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=tmp_path), log))
    codes = []
    for proc, log in procs:
        try:
            codes.append(proc.wait(timeout=300))
        finally:
            proc.kill()
            log.close()
    logs = [(tmp_path / f"node{n}.log").read_text() for n in (0, 1)]
    assert codes == [0, 0], "\n\n".join(text[-3000:] for text in logs)
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["cache", "run"]
    assert (run_dir / "prediction.tif").is_file() and (run_dir / "checkpoints" / "best.ckpt").is_file()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 <= metrics["accuracy"] <= 1
    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["status"] == "completed"
    assert not list(run_dir.glob(".*.tmp*")) and not list(run_dir.glob(".prediction.tif.parts-*"))


def test_processes_started_by_torchrun_must_name_their_run_directory(tmp_path):
    """Each torchrun process composes its own config: a clock-made run directory could split the run."""
    env = {**os.environ, "TORCHELASTIC_RUN_ID": "none", "WORLD_SIZE": "2", "RANK": "0", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "deepgeo_runner.cli", "trainer=ddp_cpu", "trainer.num_nodes=2",
                           "trainer.devices=1", f"paths.cache_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "hydra.run.dir=runs/${now:" in proc.stdout + proc.stderr
    assert "torchrun started this run's processes separately" in proc.stdout + proc.stderr


def test_launcher_slurm_asks_slurm_for_the_trainer_s_nodes_and_devices(tmp_path):
    """Through the command line: the sbatch script that launcher=slurm submits (a stand-in sbatch
    keeps it and refuses the job) asks for trainer.num_nodes nodes of trainer.devices tasks and GPUs."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="launcher=slurm needs hydra-submitit-launcher: pip install 'deepgeo-runner[slurm]'")
    bin_dir, kept = tmp_path / "bin", tmp_path / "kept.sh"
    bin_dir.mkdir()
    sbatch = bin_dir / "sbatch"
    sbatch.write_text(f'#!/bin/sh\ncp "$1" {kept}\necho "sbatch: error: no cluster here" >&2\nexit 1\n')
    sbatch.chmod(0o755)
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")  # submitit looks for it before submitting
    (bin_dir / "srun").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "deepgeo_runner.cli", "-m", "launcher=slurm", "trainer=ddp",
                           "trainer.num_nodes=2", "trainer.devices=4", "hydra.launcher.partition=gpu",
                           "hydra.launcher.timeout_min=90", "model=unet,fcn8s",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode != 0 and "no cluster here" in proc.stderr, proc.stderr[-3000:]
    script = kept.read_text()
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4", "#SBATCH --gpus-per-node=4",
                 "#SBATCH --partition=gpu", "#SBATCH --time=90", "#SBATCH --array=0-1%2",
                 "#SBATCH --job-name=deepgeo"):
        assert line in script, (line, script)
    assert "srun" in script and "submitit.core._submit" in script


def test_a_multirun_cannot_train_with_ddp_ranks_that_lightning_starts(tmp_path):
    """hydra#2070: Lightning would start ranks > 0 by running `deepgeo -m ...` again."""
    proc = subprocess.run([sys.executable, "-m", "deepgeo_runner.cli", "-m", "trainer=ddp_cpu", "seed=1,2",
                           f"hydra.sweep.dir={tmp_path / 'sweep'}", f"paths.cache_dir={tmp_path}"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "cannot train with trainer.strategy=ddp on trainer.devices=2" in proc.stdout + proc.stderr
    assert "launcher=slurm" in proc.stdout + proc.stderr


@pytest.mark.parametrize("env,rank", [
    ({}, 0),
    ({"RANK": "1", "LOCAL_RANK": "0", "GROUP_RANK": "1", "WORLD_SIZE": "2"}, 1),  # torchrun, node 1
    ({"SLURM_PROCID": "5", "SLURM_LOCALID": "1"}, 5),  # srun
    ({"LOCAL_RANK": "1", "WORLD_SIZE": "2"}, 1),  # a process that Lightning started
    ({"NODE_RANK": "1"}, 1),  # the first process of machine 1 (Lightning's own launcher): not rank 0
    ({"NODE_RANK": "1", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4"}, 5),
])
def test_only_the_first_process_of_the_first_machine_is_rank_zero(monkeypatch, env, rank):
    from deepgeo_runner.core.ranks import global_rank

    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "LOCAL_WORLD_SIZE", "WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    assert global_rank() == rank
