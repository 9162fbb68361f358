"""Objects built from ``_target_`` nodes of the config: one place for Hydra's ``instantiate``.

Like lightning-hydra-template's ``src/utils/instantiators.py``: the Trainer's callbacks are
whatever the ``callbacks`` group lists (``conf/callbacks/default.yaml``), so a callback is added,
changed or dropped in YAML, never in the runner. Values known only at run time come from the
Trainer the callbacks are given to (its ``default_root_dir`` is the run directory), and the
direction of ``train.monitor`` from the ``${monitor_mode:...}`` resolver.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from deepgeo_runner.config.schema import register_resolvers
from deepgeo_runner.core.errors import ConfigError

log = logging.getLogger(__name__)


def instantiate(node: Mapping[str, Any], key: str, **kwargs: Any) -> Any:
    """Hydra's ``instantiate``, with the underlying cause in the message instead of buried.

    Raises:
        ConfigError: naming ``key`` (the config key of ``node``), its ``_target_`` and the cause.
    """
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate as build

    register_resolvers()  # a config loaded from a run's .hydra/ needs them too
    try:
        return build(node, **kwargs)
    except InstantiationException as exc:
        cause = exc.__cause__ or exc
        raise ConfigError(
            f"{key}: cannot build '{node.get('_target_')}': {type(cause).__name__}: {cause}"
        ) from exc


def instantiate_callbacks(nodes: Mapping[str, Any] | None) -> list[Any]:
    """The callbacks of ``nodes`` (name → ``_target_`` node), in their order.

    A null entry (``callbacks.early_stopping=null``) is skipped, and so is an entry whose target
    returns None (a factory that has nothing to add, e.g. early stopping without a patience).
    """
    callbacks = []
    for name, node in (nodes or {}).items():
        if node is None:
            continue
        callback = instantiate(node, f"callbacks.{name}")
        if callback is not None:
            log.debug("callback %s: %s", name, type(callback).__name__)
            callbacks.append(callback)
    return callbacks


def instantiate_loggers(nodes: Mapping[str, Any] | None) -> list[Any]:
    """The Trainer's loggers from the ``logger`` group (name → ``_target_`` node), in their order.

    Several at once with ``'logger=[csv,tensorboard]'``; none (``logger=none``) gives an empty
    list, for which the Trainer is given ``logger=False``: the training curves are kept by the
    ``history`` callback either way. A null entry (``logger.csv=null``) is skipped.
    """
    return [instantiate(node, f"logger.{name}") for name, node in (nodes or {}).items() if node is not None]
