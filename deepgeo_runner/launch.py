"""Runs whose processes are started by an outside launcher (torchrun, srun), one command per process.

Lightning's own DDP launcher (``trainer=ddp`` on one machine) starts ranks > 0 itself and hands
them the run directory. torchrun and srun start every process themselves, and each composes
its own config: a run directory taken from the clock (the default ``runs/<date>_<time>``) could
then differ between processes, splitting one run into several folders, so such a run must
name its directory.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from deepgeo_runner.core.errors import ConfigError


def outside_launcher() -> str | None:
    """'torchrun' or 'srun' when this process is one of several that launcher started, else None."""
    if "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "torchrun"
    if int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1:  # set inside an srun step only
        return "srun"
    return None


def check_launch(*, multirun: bool, run_dir_template: str, launcher: str, trainer: Mapping[str, Any],
                 stages: Sequence[str]) -> None:
    """How this run's processes were started fits the run, before anything is read or written.

    Args:
        multirun: Hydra's mode is MULTIRUN (``-m``).
        run_dir_template: ``hydra.run.dir`` unresolved (``runs/${now:...}`` unless given).
        launcher: the ``_target_`` of Hydra's launcher.
        trainer: the ``trainer`` group; stages: the stages to run.
    """
    if not multirun:
        check_shared_run_dir(run_dir_template)
    elif {"fit", "test"} & set(stages):  # only these build a Trainer
        check_multirun_processes(launcher, trainer)


def lightning_starts_processes(trainer: Mapping[str, Any]) -> bool:
    """True when Lightning itself starts ranks > 0 by running the command line again (DDP's
    subprocess launcher): a ddp strategy on several devices, not under torchrun or srun."""
    strategy = trainer.get("strategy", "auto")
    name = str(strategy.get("_target_", "") if isinstance(strategy, Mapping) else strategy).lower()
    devices = trainer.get("devices", 1)
    one_device = devices == 1 or (isinstance(devices, Sequence) and not isinstance(devices, str) and len(devices) == 1)
    several = trainer.get("num_nodes", 1) != 1 or not one_device
    return "ddp" in name and not any(s in name for s in ("spawn", "fork", "notebook")) and several \
        and outside_launcher() is None


def check_multirun_processes(launcher: str, trainer: Mapping[str, Any]) -> None:
    """A multirun through Hydra's basic (or joblib) launcher cannot train with Lightning-started DDP ranks."""
    if "LOCAL_RANK" in os.environ or "submitit" in launcher.lower() or not lightning_starts_processes(trainer):
        return
    raise ConfigError(
        f"a multirun (-m) through {launcher.rsplit('.', 1)[-1]} cannot train with trainer.strategy="
        f"{trainer.get('strategy')} on trainer.devices={trainer.get('devices')} (trainer.num_nodes="
        f"{trainer.get('num_nodes', 1)}): Lightning starts the ranks > 0 by running this command line again, "
        "-m included, so each would start the whole sweep again (facebookresearch/hydra#2070). Run each job "
        "as its own command (deepgeo trainer=ddp ...), or use launcher=slurm, where each job is its own srun "
        "with one task per device."
    )


def check_shared_run_dir(run_dir_template: str) -> None:
    """Under torchrun or srun (a single run), ``hydra.run.dir`` must not depend on the clock."""
    launcher = outside_launcher()
    if launcher is not None and "${now:" in str(run_dir_template):
        raise ConfigError(
            f"hydra.run.dir={run_dir_template} takes the time from each process's clock, but {launcher} started "
            "this run's processes separately: they could write to different folders. Give every "
            f"{launcher} process the same folder, e.g. hydra.run.dir=runs/ddp_$(date +%Y-%m-%d_%H-%M-%S)."
        )
