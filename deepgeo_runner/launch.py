"""Runs whose processes are started by an outside launcher (torchrun, srun), one command per process.

Lightning's own DDP launcher (``trainer=ddp`` on one machine) starts ranks > 0 itself and hands
them the run directory. torchrun and srun start every process themselves, and each composes
its own config: a run directory taken from the clock (the default ``runs/<date>_<time>``) could
then differ between processes, splitting one run into several folders, so such a run must
name its directory.
"""

from __future__ import annotations

import os
from typing import Any

from omegaconf import OmegaConf

from deepgeo_runner.errors import ConfigError


def outside_launcher() -> str | None:
    """'torchrun' or 'srun' when this process is one of several that launcher started, else None."""
    if "TORCHELASTIC_RUN_ID" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        return "torchrun"
    if int(os.environ.get("SLURM_STEP_NUM_TASKS", "1")) > 1:  # set inside an srun step only
        return "srun"
    return None


def check_shared_run_dir(hydra_cfg: Any) -> None:
    """Under torchrun or srun (a single run, not a multirun), ``hydra.run.dir`` must not depend on the clock."""
    launcher = outside_launcher()
    if launcher is None or str(hydra_cfg.mode).endswith("MULTIRUN"):
        return
    raw = OmegaConf.to_container(hydra_cfg.run, resolve=False).get("dir")
    if "${now:" in str(raw):
        raise ConfigError(
            f"hydra.run.dir={raw} takes the time from each process's clock, but {launcher} started "
            "this run's processes separately: they could write to different folders. Give every "
            f"{launcher} process the same folder, e.g. hydra.run.dir=runs/ddp_$(date +%Y-%m-%d_%H-%M-%S)."
        )
