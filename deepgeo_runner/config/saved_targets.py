"""What an old run's saved config may name as code: the package's own ``_target_``s, nothing else.

``deepgeo-repeat RUN_DIR`` composes ``RUN_DIR/.hydra/config.yaml``, and Hydra then instantiates every
``_target_`` in it (the model, loss, optimizer, trainer, callbacks, loggers). A run folder is
something people copy and share, so its config is data: a ``_target_`` of ``builtins.open`` or
``torch.load`` would run the moment the repeat starts. Here every ``_target_`` of the saved config
must be one this package's own config tree uses, one of its models, or a class of a few
well-known families (torch optimizers and schedulers, Lightning callbacks and loggers, torchgeo
datamodules); any other must be named again by the user on the repeat's command line
(``model._target_=tiny_net.TinyNet``): the file alone never decides what code runs. A ``hydra``
node (Hydra's own callbacks, environment and launcher) and a ``defaults`` list are refused too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from deepgeo_runner.core.errors import ConfigError

# Classes (a capital first letter: no functions such as torch.load) of well-known families.
_FAMILIES = re.compile(
    r"^(torch\.optim(\.lr_scheduler)?|lightning\.pytorch\.(callbacks|loggers)|pytorch_lightning\.(callbacks|loggers)"
    r"|torchgeo\.datamodules)\.[A-Z]\w*$")


def targets_in(node: Any, where: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(key path, value)`` of a ``_target_`` in a plain config tree."""
    if isinstance(node, Mapping):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if key == "_target_":
                yield path, value
            else:
                yield from targets_in(value, path)
    elif isinstance(node, list | tuple):
        for i, value in enumerate(node):
            yield from targets_in(value, f"{where}[{i}]")


@cache
def package_targets(conf_dir: Path) -> frozenset[str]:
    """The ``_target_``s written in this package's own config files (``conf/**/*.yaml``)."""
    found: set[str] = set()
    for file in sorted(conf_dir.rglob("*.yaml")):
        try:
            tree = yaml.safe_load(file.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue
        found.update(str(v) for _, v in targets_in(tree) if isinstance(v, str) and "${" not in v and v != "???")
    return frozenset(found)


def allowed_target(target: str, conf_dir: Path) -> bool:
    """Whether a saved config may name ``target`` without the user naming it again."""
    # heavy: torch (the networks); the config checks run without it
    from deepgeo_runner.ml.models.registry import KNOWN_MODELS

    return target in package_targets(conf_dir) or target in KNOWN_MODELS or bool(_FAMILIES.match(target))


def check_saved_config(saved: Mapping[str, Any], source: str, conf_dir: Path, overrides: Iterable[str] = ()) -> None:
    """Refuse a saved run config that names code this package does not know, before anything is built.

    ``overrides`` are the user's own command-line overrides: ``model._target_=tiny_net.TinyNet`` there
    names that class in the user's own words, so the saved config may name it at the same key.

    Raises:
        ConfigError: naming the file, the key and the target, and how to allow one's own class.
    """
    for key in ("hydra", "defaults"):
        if key in saved:
            raise ConfigError(
                f"{source} holds a '{key}' node; a run's saved config.yaml never does (Hydra keeps its own settings in "
                "hydra.yaml), and it could make Hydra run code or compose other files. It was refused before "
                "anything ran.")
    named = {(key.lstrip("+").strip(), value.strip()) for key, _, value in
             (item.partition("=") for item in overrides if "=" in item)}
    for path, target in targets_in(saved):
        if not isinstance(target, str):
            raise ConfigError(f"{source}: {path} must name a class, got {target!r}.")
        if (path, target) in named or allowed_target(target, conf_dir):
            continue
        raise ConfigError(
            f"{source}: {path}={target} is not one of deepgeo's own classes and was refused before anything ran "
            "(a run folder is data: it never decides what code runs). If it is your own class, name it on the "
            f"command line too: deepgeo-repeat RUN_DIR {path}={target}")
