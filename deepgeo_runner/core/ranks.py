"""Which process of a multi-process run this is, known before Lightning starts."""

from __future__ import annotations

import os


def global_rank() -> int:
    """This process's rank, from the environment even before Lightning starts.

    torchrun sets ``RANK``, srun ``SLURM_PROCID``. Lightning's own launcher gives the processes it
    starts ``LOCAL_RANK`` (and ``NODE_RANK`` on a machine other than the first), but not the
    process it was started from: there ``NODE_RANK``/``GROUP_RANK`` × ``LOCAL_WORLD_SIZE`` (or 1,
    when unknown) is returned, so that only the first process of the first machine is rank 0.
    """
    for var in ("RANK", "SLURM_PROCID"):
        if var in os.environ:
            return int(os.environ[var])
    node = int(os.environ.get("NODE_RANK", os.environ.get("GROUP_RANK", "0")) or 0)
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)
    return node * per_node + int(os.environ.get("LOCAL_RANK", "0") or 0)
