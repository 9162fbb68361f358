"""The one mapping from the composed config to typed options.

Hydra composes a ``DictConfig``; here it is checked (:func:`validate_config`) and turned into
the schema's dataclasses (:class:`~deepgeo_runner.config.schema.RunConfig` and its groups),
whose fields carry the defaults and whose ``__post_init__`` checks apply to library callers
too. Every stage takes those dataclasses (or plain arguments); besides the CLI, nothing under
``deepgeo_runner/`` but the ``config`` package imports omegaconf. ``_target_`` groups (model,
loss, optimizer, trainer, logger, callbacks) become plain dicts that
``hydra.utils.instantiate`` builds later, with the values known only at run time.
"""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError

from deepgeo_runner.config.schema import RunConfig, register_resolvers
from deepgeo_runner.config.validate import validate_config


def run_options(cfg: DictConfig | RunConfig, run_dir: str | Path | None = None) -> RunConfig:
    """The validated, typed options of ``cfg`` (a RunConfig is returned as it is).

    ``run_dir`` stands in for ``paths.output_dir`` when that interpolates Hydra's runtime
    output directory and no Hydra run is active (a config composed in Python).
    """
    if isinstance(cfg, RunConfig):
        return cfg
    validate_config(cfg)
    register_resolvers()  # ${monitor_mode:...} in the callbacks group resolves here
    try:
        return OmegaConf.to_object(cfg)
    except InterpolationResolutionError:
        if run_dir is None:
            raise
        cfg = cfg.copy()
        cfg.paths.output_dir = str(run_dir)
        return OmegaConf.to_object(cfg)
