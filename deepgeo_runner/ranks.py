"""Which process of a multi-process run this is, known before Lightning starts."""

from __future__ import annotations

import os


def global_rank() -> int:
    """This process's rank, known from the environment even before Lightning starts."""
    for var in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if var in os.environ:
            return int(os.environ[var])
    return 0
